// Starts Swagger UI on /api/v1/docs (templates/portal/api_docs.html, decision 0028). Its settings
// come from the page's JSON block (portal/api.py, VendoredSwagger), so the page carries no inline
// script and runs under the portal's Content Security Policy.
document.addEventListener("DOMContentLoaded", function () {
  var settings = JSON.parse(document.getElementById("swagger-settings").textContent);
  settings.dom_id = "#swagger-ui";
  settings.presets = [window.SwaggerUIBundle.presets.apis];
  window.ui = window.SwaggerUIBundle(settings);
});

// A "Print" button for pages that have one: shown only when JavaScript runs (it is `hidden` in
// the HTML), no inline handlers, so the page stays CSP-ready.
document.querySelectorAll("[data-print]").forEach(function (button) {
  button.hidden = false;
  button.addEventListener("click", function () { window.print(); });
});

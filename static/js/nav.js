// The phone menu (decision 0029). Loaded in <head> without `defer`: it marks <html class="js">
// before the first paint, and responsive.css collapses the navigation behind the Menu button
// only under that class, so without JavaScript every link stays listed. The button says
// whether the menu is open (aria-expanded) and names what it opens (aria-controls); on a wide
// screen it is hidden and the navigation always shows, whatever aria-expanded says.
document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-nav-toggle]").forEach(function (button) {
    var menu = document.getElementById(button.getAttribute("aria-controls"));
    if (!menu) return;

    function setOpen(open) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
      menu.classList.toggle("is-open", open);
    }

    button.addEventListener("click", function () {
      setOpen(button.getAttribute("aria-expanded") !== "true");
    });
    // Escape closes an open menu and gives focus back to its button.
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        button.focus();
      }
    });
  });
});

// One way to show a refused form (decision 0029): when a page comes back with errors, focus
// goes to the first of them and it is scrolled into view, so nobody hunts for the message
// 1,000 px below with focus on <body>. The first error is, in document order:
//   - a field Django marked aria-invalid="true" (its aria-describedby names the message), or
//   - a `.field-error` message without such a field, or
//   - a form-level refusal: an `.alert-error[role=alert]` inside a form before its first field,
//     or right before the form (its non-field errors), or any element marked data-form-error.
// A banner elsewhere on the page (arrears, a failed payment) is not a refused form and keeps
// focus where it is. Runs on load, and on content htmx swaps in.
(function () {
  var FIELDS = "input:not([type=hidden]), select, textarea";

  function isFormRefusal(alert) {
    if (alert.hasAttribute("data-form-error")) return true;
    var next = alert.nextElementSibling;
    if (next && next.tagName === "FORM") return true;
    var form = alert.closest("form");
    if (!form) return false;
    var field = form.querySelector(FIELDS);
    return !field || Boolean(alert.compareDocumentPosition(field) & Node.DOCUMENT_POSITION_FOLLOWING);
  }

  function firstError(root) {
    var candidates = root.querySelectorAll(
      '[aria-invalid="true"], .field-error, .alert-error[role="alert"], [data-form-error]');
    for (var i = 0; i < candidates.length; i++) {
      var el = candidates[i];
      if (el.matches('[aria-invalid="true"]')) return el;
      if (el.matches(".field-error")) {
        // the message of a field Django marked invalid is reached through that field
        var field = el.closest(".field");
        var invalid = field && field.querySelector('[aria-invalid="true"]');
        return invalid || el;
      }
      if (isFormRefusal(el)) return el;
    }
    return null;
  }

  function focusFirstError(root) {
    var target = firstError(root);
    if (!target) return false;
    if (!target.matches(FIELDS + ", button, a[href], [tabindex]")) target.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: true });
    // the whole field (label, input, message) in the middle of the screen, clear of the sticky top bar
    (target.closest(".field") || target).scrollIntoView({ block: "center" });
    return true;
  }

  document.addEventListener("DOMContentLoaded", function () {
    focusFirstError(document.getElementById("content") || document.body);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var root = event.detail.elt;
    if (root && root.querySelector && root.querySelector('[aria-invalid="true"]')) focusFirstError(root);
  });
})();

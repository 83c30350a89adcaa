// The support console's small accessibility and phone fixes that need the DOM (issue 13; loaded by
// templates/admin/base_site.html, no inline script: CSP). Django's own CSS and JS stay as they are.
//
// 1. Lists (#result_list), the confirmation tables (table.stack-on-phone) and a change form's
//    tables (tabular inlines, read-only histories): each cell gets its
//    column's header text as data-label; at <= 600 px static/css/admin.css shows each row as
//    stacked "label: value" lines, so the link and status columns are never off-screen. The table
//    semantics are set explicitly (CSS display changes strip them in some browsers).
// 2. The autocomplete (select2) box of a select has no accessible name: it gets its <label>'s text.
// 3. The filter_horizontal widget's search icon is a <span aria-label>, which is not allowed on a
//    span without a role: it becomes role="img".
(function () {
  function text(node) {
    var copy = node.cloneNode(true);
    copy.querySelectorAll(".visually-hidden, .sortoptions, .action-checkbox-column input").forEach(function (n) {
      n.remove();
    });
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function stack(table) {
    var head = table.tHead && table.tHead.rows[table.tHead.rows.length - 1];
    if (!head) return;  // run again after a formset adds a row: the new row gets its labels too
    var labels = [];
    Array.prototype.forEach.call(head.cells, function (th) {
      for (var i = 0; i < (th.colSpan || 1); i++) labels.push(text(th));
    });
    table.setAttribute("role", "table");
    Array.prototype.forEach.call(table.querySelectorAll(":scope > thead, :scope > tbody"), function (group) {
      group.setAttribute("role", "rowgroup");
    });
    Array.prototype.forEach.call(table.rows, function (row) {
      if (row.classList.contains("add-row")) return;  // the formset's "Add another" link, not data
      row.setAttribute("role", "row");
      var column = 0;
      Array.prototype.forEach.call(row.cells, function (cell) {
        var inHead = row.parentNode.tagName === "THEAD";
        cell.setAttribute("role", inHead ? "columnheader" : cell.tagName === "TH" ? "rowheader" : "cell");
        if (!inHead && (cell.colSpan || 1) === 1 && labels[column]) cell.setAttribute("data-label", labels[column]);
        column += cell.colSpan || 1;
      });
    });
    table.dataset.stacked = "1";
    table.classList.add("table-stack");
  }

  function nameAutocompletes() {
    document.querySelectorAll("select.admin-autocomplete").forEach(function (select) {
      var container = select.nextElementSibling;
      var label = select.id && document.querySelector('label[for="' + select.id + '"]');
      if (!container || !label) return;
      var name = label.textContent.replace(/[:\s]+$/, "").trim();
      // the combobox, and the read-only textbox inside it that shows the choice
      container.querySelectorAll(".select2-selection, .select2-selection__rendered").forEach(function (box) {
        if (!box.hasAttribute("aria-label")) box.setAttribute("aria-label", name);
      });
    });
  }

  // select2 builds its boxes on jQuery's ready, which may come after the load event: name them as
  // they appear
  function watchAutocompletes() {
    if (!document.querySelector("select.admin-autocomplete")) return;
    new MutationObserver(nameAutocompletes).observe(document.body, {childList: true, subtree: true});
  }

  function roleIcons() {
    document.querySelectorAll("span.search-label-icon[aria-label]:not([role])").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
  }

  // A box that still scrolls sideways (a wide inline on a phone) can be reached by keyboard.
  function focusableScrollers() {
    document.querySelectorAll("#content-main .inline-group, #content-main .inline-group .tabular").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth || box.scrollHeight > box.clientHeight;
      if (scrolls && !box.hasAttribute("tabindex")) box.tabIndex = 0;
    });
  }

  function run() {
    // lists, confirmations, and a change form's tables: tabular inlines and read-only histories
    document.querySelectorAll("#result_list, table.stack-on-phone, #content-main form table").forEach(stack);
    nameAutocompletes();
    roleIcons();
    focusableScrollers();
  }

  document.addEventListener("DOMContentLoaded", function () { run(); watchAutocompletes(); });
  // select2 and SelectFilter build their widgets on DOMContentLoaded / jQuery ready too: after them
  window.addEventListener("load", run);
  document.addEventListener("formset:added", run);
})();

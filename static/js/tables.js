// One table pattern for the whole dashboard (decision 0029). For every data table (`table.table`
// with a header row of three or more columns) this copies each column's <th> text into its
// cells' data-label and marks the table `table-stack`: at <= 600 px responsive.css shows each
// row as stacked label/value pairs, so no column is off-screen. CSS `display` changes strip a
// table's semantics in some browsers, so the table, row, header and cell roles are set
// explicitly. A `.table-scroll` wrapper that still overflows (a tablet) becomes focusable, so a
// keyboard can scroll it. Runs on load and again on whatever htmx swaps in.
(function () {
  function headerLabels(table) {
    var head = table.tHead && table.tHead.rows[table.tHead.rows.length - 1];
    if (!head) return null;
    var labels = [];
    Array.prototype.forEach.call(head.cells, function (th) {
      // a header only screen readers hear ("Actions") labels nothing on screen either
      var shown = th.cloneNode(true);
      shown.querySelectorAll(".visually-hidden").forEach(function (hidden) { hidden.remove(); });
      var text = shown.textContent.replace(/\s+/g, " ").trim();
      for (var i = 0; i < (th.colSpan || 1); i++) labels.push(text);
    });
    return labels;
  }

  function setRoles(table) {
    table.setAttribute("role", "table");
    Array.prototype.forEach.call(table.querySelectorAll(":scope > thead, :scope > tbody, :scope > tfoot"), function (group) {
      group.setAttribute("role", "rowgroup");
    });
    Array.prototype.forEach.call(table.rows, function (row) {
      row.setAttribute("role", "row");
      Array.prototype.forEach.call(row.cells, function (cell) {
        if (cell.tagName === "TH") {
          cell.setAttribute("role", cell.getAttribute("scope") === "row" ? "rowheader" : "columnheader");
        } else {
          cell.setAttribute("role", "cell");
        }
      });
    });
  }

  function stack(table) {
    var labels = headerLabels(table);
    if (!labels || labels.length < 3) return;  // two columns already fit a phone
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.cells, function (cell) {
          var span = cell.colSpan || 1;
          if (span === 1 && labels[column]) cell.setAttribute("data-label", labels[column]);
          column += span;
        });
      });
    });
    setRoles(table);
    table.classList.add("table-stack");
  }

  function markScrollable(wrapper) {
    if (wrapper.scrollWidth > wrapper.clientWidth + 1) {
      wrapper.setAttribute("tabindex", "0");
      if (!wrapper.hasAttribute("aria-label")) {
        var card = wrapper.closest("section, .card");
        var heading = card && card.querySelector("h1, h2, h3");
        var name = heading ? heading.textContent.replace(/\s+/g, " ").trim() : "Table";
        wrapper.setAttribute("role", "region");
        wrapper.setAttribute("aria-label", name + " (scrolls sideways)");
      }
    } else if (wrapper.getAttribute("tabindex") === "0") {
      wrapper.removeAttribute("tabindex");
      wrapper.removeAttribute("role");
      wrapper.removeAttribute("aria-label");
    }
  }

  function within(root, selector) {
    var found = Array.prototype.slice.call(root.querySelectorAll ? root.querySelectorAll(selector) : []);
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  function enhance(root) {
    // a swapped-in row (htmx) relabels its whole table
    var table = root.closest && root.closest("table.table");
    within(table || root, "table.table").forEach(stack);
    document.querySelectorAll(".table-scroll").forEach(markScrollable);
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
  var resizing;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { document.querySelectorAll(".table-scroll").forEach(markScrollable); }, 150);
  });
})();

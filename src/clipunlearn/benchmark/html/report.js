// clipunlearn's benchmark report: sort a table by a header, filter its rows, show the plots' tooltips.
// Inlined into index.html; reads only the page itself.
(function () {
  "use strict";

  var MISSING = "–";
  var NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?(\s*±.*)?$/i;  // "0.750", "0.750 ± 0.147", "9"

  // The value a cell sorts by: a number where its text is one (a mean ± std by its mean), else its text;
  // null where nothing was measured (sorted last either way).
  function sortKey(cell) {
    var text = cell ? cell.textContent.trim() : "";
    if (text === "" || text === MISSING) {
      return null;
    }
    return NUMBER.test(text) ? parseFloat(text) : text.toLowerCase();
  }

  function compareKeys(a, b) {
    if (typeof a === typeof b) {
      return a < b ? -1 : a > b ? 1 : 0;
    }
    return typeof a === "number" ? -1 : 1;  // numbers before words
  }

  function sortTable(table, header) {
    var index = header.cellIndex;
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var h = 0; h < headers.length; h++) {
      headers[h].setAttribute("aria-sort", "none");
    }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, order: i, key: sortKey(row.cells[index]) };
    });
    rows.sort(function (p, q) {
      if (p.key === null || q.key === null) {
        return p.key === q.key ? p.order - q.order : p.key === null ? 1 : -1;
      }
      var c = compareKeys(p.key, q.key);
      return (ascending ? c : -c) || p.order - q.order;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }

  // Show the rows whose text holds every word typed (case-insensitive); hide the others.
  function filterTable(table, input) {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table.tBodies[0].rows;
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var text = rows[i].textContent.toLowerCase();
      rows[i].hidden = !words.every(function (w) { return text.indexOf(w) !== -1; });
      shown += rows[i].hidden ? 0 : 1;
    }
    var count = document.querySelector('[data-count="' + table.id + '"]');
    if (count) {
      count.textContent = shown === rows.length ? rows.length + " rows" : shown + " of " + rows.length + " rows";
    }
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header) {
      header.addEventListener("click", function () { sortTable(table, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortTable(table, header);
        }
      });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    if (table) {
      input.addEventListener("input", function () { filterTable(table, input); });
    }
  });

  // Tooltips: each plot mark names its entry of the page's JSON block; its text is set as text, never as HTML.
  var block = document.getElementById("tips");
  var tip = document.getElementById("tooltip");
  if (!block || !tip) {
    return;
  }
  var entries = JSON.parse(block.textContent);

  function show(mark, x, y) {
    var entry = entries[Number(mark.getAttribute("data-tip"))];
    if (!entry) {
      return;
    }
    tip.replaceChildren();
    var title = document.createElement("strong");
    title.textContent = entry.title;
    tip.appendChild(title);
    entry.lines.forEach(function (line) {
      var div = document.createElement("div");
      div.textContent = line;
      tip.appendChild(div);
    });
    tip.hidden = false;
    place(x, y);
  }

  function place(x, y) {
    var left = Math.min(x + 14, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(window.scrollX, left) + "px";
    tip.style.top = y + 14 + "px";
  }

  document.addEventListener("mouseover", function (event) {
    var mark = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (mark) {
      show(mark, event.pageX, event.pageY);
    }
  });
  document.addEventListener("mousemove", function (event) {
    if (!tip.hidden) {
      place(event.pageX, event.pageY);
    }
  });
  document.addEventListener("mouseout", function (event) {
    if (event.target.closest && event.target.closest("[data-tip]")) {
      tip.hidden = true;
    }
  });
  document.addEventListener("focusin", function (event) {
    var mark = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (mark) {
      var box = mark.getBoundingClientRect();
      show(mark, box.right + window.scrollX, box.top + window.scrollY);
    }
  });
  document.addEventListener("focusout", function () { tip.hidden = true; });
})();

// Page behaviour shared by every page (a file, not inline: the CSP forbids inline scripts).
// - the header menu collapses behind a button on narrow screens;
// - wide tables scroll sideways inside their own keyboard-focusable box.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");

  function setUpMenu() {
    var button = document.querySelector(".menu-toggle");
    var menu = document.getElementById("site-menu");
    if (!button || !menu) { return; }
    button.hidden = false;
    function setOpen(open) {
      menu.classList.toggle("open", open);
      button.setAttribute("aria-expanded", open ? "true" : "false");
    }
    button.addEventListener("click", function () {
      setOpen(button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        button.focus();
      }
    });
  }

  function wrapTables() {
    var label = document.body.getAttribute("data-scroll-label") || "";
    var tables = document.querySelectorAll("main table");
    for (var i = 0; i < tables.length; i += 1) {
      var table = tables[i];
      if (table.parentNode.classList && table.parentNode.classList.contains("table-wrap")) { continue; }
      var box = document.createElement("div");
      box.className = "table-wrap";
      box.setAttribute("role", "region");
      box.setAttribute("aria-label", label);
      box.tabIndex = 0;
      table.parentNode.insertBefore(box, table);
      box.appendChild(table);
    }
  }

  function ready() {
    setUpMenu();
    wrapTables();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
}());

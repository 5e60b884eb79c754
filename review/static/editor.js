// The article form: Markdown preview rendered by the server, and findings that select their
// text in the title or body field. A static file because the CSP forbids inline scripts.
(function () {
  "use strict";

  var form = document.getElementById("item-form");
  if (!form) { return; }

  // --- preview: POST the body to the server, which renders and sanitises it ----------------
  var button = document.getElementById("preview-button");
  var section = document.getElementById("preview-section");
  var target = document.getElementById("preview");
  var errorBox = document.getElementById("preview-error");
  var failedText = document.getElementById("preview-failed-text");

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  if (button && section && target) {
    button.addEventListener("click", function () {
      var data = new FormData();
      data.append("body", form.elements.body.value);
      var token = form.elements.csrf_token ? form.elements.csrf_token.value : "";
      button.disabled = true;
      errorBox.hidden = true;
      fetch(button.getAttribute("data-preview-url"), {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": token, "Accept": "application/json" }
      }).then(function (response) {
        return response.json().then(function (payload) {
          section.hidden = false;
          if (!response.ok) {
            target.textContent = "";
            showError(payload && payload.message ? payload.message : failedText.textContent);
            return;
          }
          target.innerHTML = payload.html;  // rendered and sanitised (nh3) by the server
        });
      }).catch(function () {
        section.hidden = false;
        showError(failedText.textContent);
      }).then(function () {
        button.disabled = false;
      });
    });
  }

  // --- findings beside the text: select the span in the field --------------------------------
  var missing = document.getElementById("finding-missing");

  function locate(value, start, end, text) {
    if (value.slice(start, end) === text) { return [start, end]; }
    if (!text) { return null; }
    // The text was edited since screening: take the occurrence nearest the old place.
    var best = -1, from = 0, at;
    while ((at = value.indexOf(text, from)) !== -1) {
      if (best === -1 || Math.abs(at - start) < Math.abs(best - start)) { best = at; }
      from = at + 1;
    }
    return best === -1 ? null : [best, best + text.length];
  }

  function scrollToSelection(field, start) {
    if (field.tagName !== "TEXTAREA") { return; }
    var lines = field.value.slice(0, start).split("\n").length - 1;
    var lineHeight = parseFloat(window.getComputedStyle(field).lineHeight) || 24;
    field.scrollTop = Math.max(0, lines * lineHeight - field.clientHeight / 3);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".finding-jump"), function (jump) {
    jump.addEventListener("click", function () {
      var field = form.elements[jump.getAttribute("data-field")];
      if (!field) { return; }
      var span = locate(
        field.value,
        parseInt(jump.getAttribute("data-start"), 10),
        parseInt(jump.getAttribute("data-end"), 10),
        jump.getAttribute("data-text")
      );
      if (!span) {
        if (missing) { missing.hidden = false; }
        return;
      }
      if (missing) { missing.hidden = true; }
      field.focus();
      field.setSelectionRange(span[0], span[1]);
      scrollToSelection(field, span[0]);
    });
  });
})();

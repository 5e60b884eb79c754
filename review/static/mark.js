// Review page: the expert selects a passage of the title or body and marks it as a new
// finding. Offsets are sent in code points (as Python counts them), measured from the start of
// the text container, whose text is exactly the stored text.
(function () {
  "use strict";
  var form = document.getElementById("mark-text");
  if (!form) { return; }
  var shown = form.querySelector("[data-role=selected]");
  var submit = form.querySelector("[data-role=submit]");
  var empty = shown.textContent;

  function codePoints(text) { return Array.from(text).length; }

  function containerOf(node) {
    while (node && node !== document.body) {
      if (node.nodeType === 1 && node.hasAttribute("data-segment")) { return node; }
      node = node.parentNode;
    }
    return null;
  }

  function offsetIn(container, node, offset) {
    var range = document.createRange();
    range.setStart(container, 0);
    range.setEnd(node, offset);
    return codePoints(range.toString());
  }

  function clear() {
    form.elements.segment.value = "";
    form.elements.start.value = "";
    form.elements.end.value = "";
    shown.textContent = empty;
    submit.disabled = true;
  }

  function update() {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) { return; }
    var range = sel.getRangeAt(0);
    var container = containerOf(range.startContainer);
    if (!container || container !== containerOf(range.endContainer)) { return; }
    var start = offsetIn(container, range.startContainer, range.startOffset);
    var end = offsetIn(container, range.endContainer, range.endOffset);
    var text = range.toString();
    if (end <= start || !text.trim()) { clear(); return; }
    form.elements.segment.value = container.getAttribute("data-segment");
    form.elements.start.value = String(start);
    form.elements.end.value = String(end);
    shown.textContent = text.length > 120 ? text.slice(0, 120) + "…" : text;
    submit.disabled = false;
  }

  document.addEventListener("selectionchange", update);
  clear();
})();

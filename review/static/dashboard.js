// Draws the dashboard charts from the JSON the page embeds (no inline script: the CSP forbids it).
(function () {
  "use strict";
  var node = document.getElementById("dashboard-data");
  if (!node || typeof Chart === "undefined") { return; }
  var data = JSON.parse(node.textContent);
  var colours = ["#0b5cad", "#e8590c", "#2b8a3e", "#c92a2a", "#5f3dc4", "#1098ad", "#f08c00"];
  function bar(id, labels, values, label, horizontal) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    if (!labels.length) { canvas.hidden = true; return; }
    new Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: [{ label: label, data: values, backgroundColor: colours[0] }] },
      options: { indexAxis: horizontal ? "y" : "x", animation: false, plugins: { legend: { display: false } } }
    });
  }
  var decisions = Object.keys(data.decisions);
  var decisionCanvas = document.getElementById("chart-decisions");
  if (decisionCanvas && !decisions.length) { decisionCanvas.hidden = true; }
  if (decisionCanvas && decisions.length) {
    new Chart(decisionCanvas, {
      type: "doughnut",
      data: { labels: decisions, datasets: [{ data: decisions.map(function (k) { return data.decisions[k]; }), backgroundColor: colours }] },
      options: { animation: false }
    });
  }
  bar("chart-domains", data.by_domain.map(function (r) { return r.domain; }), data.by_domain.map(function (r) { return r.versions; }), "", true);
  var ranked = data.rules.filter(function (r) { return r.precision !== null; }).slice(0, 15);
  bar("chart-rules", ranked.map(function (r) { return r.rule_id; }), ranked.map(function (r) { return Math.round(r.precision * 100); }), "%", true);
}());

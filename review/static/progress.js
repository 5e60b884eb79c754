// Live progress on the item page and the item list: polls the read-only status JSON every few
// seconds while an item waits on the worker or the experts, updates the state badge and the
// findings count in place, and offers a reload when the page's other content is out of date.
// Polling stops once nothing waits, and pauses while the tab is hidden.
(function () {
  "use strict";

  var EVERY_MS = 3000;

  function poller(tick) {
    var timer = null, stopped = false;
    function schedule() {
      if (stopped || document.hidden || timer !== null) { return; }
      timer = window.setTimeout(function () {
        timer = null;
        tick().then(function (more) {
          if (more === false) { stopped = true; } else { schedule(); }
        }, function (error) {
          // Signed out, or the item is gone from view: stop; a network hiccup: try again.
          if (error && error.status >= 400 && error.status < 500) { stopped = true; } else { schedule(); }
        });
      }, EVERY_MS);
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden && timer !== null) {
        window.clearTimeout(timer);
        timer = null;
      } else {
        schedule();
      }
    });
    schedule();
  }

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) {
        var error = new Error("status " + response.status);
        error.status = response.status;
        throw error;
      }
      return response.json();
    });
  }

  function setBadge(root, status) {
    var badge = root.querySelector("[data-live='state']");
    if (badge && badge.textContent !== status.state_label) {
      badge.textContent = status.state_label;
      badge.className = "state s-" + status.state;
    }
    var findings = root.querySelector("[data-live='findings']");
    if (findings && !status.screening.pending && status.version !== null) {
      findings.textContent = String(status.findings);
    }
    Array.prototype.forEach.call(root.querySelectorAll("[data-live='progress']"), function (node) {
      node.hidden = !status.screening.pending;
    });
  }

  // --- the item page -----------------------------------------------------------------------
  var live = document.getElementById("live-status");
  if (live && live.getAttribute("data-terminal") !== "true") {
    var url = live.getAttribute("data-status-url");
    var key = live.getAttribute("data-content-key");
    poller(function () {
      return getJSON(url).then(function (status) {
        setBadge(document, status);
        var attempts = live.querySelector("[data-live='attempts']");
        if (attempts) {
          attempts.textContent = String(status.screening.attempts);
          live.querySelector("[data-live='attempts-wrap']").hidden = status.screening.attempts < 2;
        }
        var queue = live.querySelector("[data-live='queue']");
        if (queue) { queue.textContent = status.queue_label; }
        if (status.content_key !== key) {
          live.querySelector("[data-live='notice']").hidden = false;
        }
        return !status.terminal;
      });
    });
  }

  // --- the item list -----------------------------------------------------------------------
  var table = document.getElementById("item-list");
  if (table) {
    var rows = {};
    Array.prototype.forEach.call(table.querySelectorAll("tr[data-item-id]"), function (row) {
      if (row.getAttribute("data-terminal") !== "true") {
        rows[row.getAttribute("data-item-id")] = row;
      }
    });
    var waiting = function () { return Object.keys(rows).slice(0, 100); };
    if (waiting().length) {
      var base = table.getAttribute("data-status-url");
      poller(function () {
        var ids = waiting();
        var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
        return getJSON(base + "?" + query).then(function (payload) {
          payload.items.forEach(function (status) {
            var row = rows[String(status.id)];
            if (!row) { return; }
            if (row.querySelector("[data-live='state']").className !== "state s-" + status.state) {
              document.getElementById("list-notice").hidden = false;
            }
            setBadge(row, status);
            if (status.terminal) { delete rows[String(status.id)]; }
          });
          return waiting().length > 0;
        });
      });
    }
  }
})();

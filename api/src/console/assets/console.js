// Vigil console: keyboard triage and the live count of new alerts. Plain JavaScript, no
// framework; every page works without it.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
  }

  function click(id) {
    var element = document.getElementById(id);
    if (element) { element.click(); }
  }

  // The queue: j/k move, Enter opens, x checks; the header box checks all.
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr"));
  var selected = -1;
  function select(i) {
    if (rows.length === 0) { return; }
    if (selected >= 0) { rows[selected].classList.remove("selected"); }
    selected = Math.max(0, Math.min(rows.length - 1, i));
    rows[selected].classList.add("selected");
    rows[selected].scrollIntoView({ block: "nearest" });
  }
  var all = document.getElementById("check-all");
  if (all) {
    all.addEventListener("change", function () {
      rows.forEach(function (row) { row.querySelector("input[type=checkbox]").checked = all.checked; });
    });
  }

  document.addEventListener("keydown", function (event) {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (rows.length > 0) {
      if (event.key === "j") { select(selected + 1); }
      else if (event.key === "k") { select(selected - 1); }
      else if (event.key === "Enter" && selected >= 0) { window.location = rows[selected].dataset.href; }
      else if (event.key === "x" && selected >= 0) { rows[selected].querySelector("input[type=checkbox]").click(); }
      return;
    }
    var keys = { j: "next", k: "previous", c: "claim", f: "fraud", g: "genuine" };
    if (keys[event.key]) { click(keys[event.key]); }
  });

  // The system page's charts, redrawn as the server samples its metrics.
  var charts = document.getElementById("charts");
  if (charts && charts.dataset.refresh) {
    window.setInterval(function () {
      fetch(charts.dataset.refresh, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) { if (html !== null) { charts.innerHTML = html; } })
        .catch(function () {});
    }, 10000);
  }

  // New alerts, as the scoring service raises them.
  var live = document.getElementById("live");
  if (live && window.EventSource) {
    var count = 0;
    var source = new EventSource("/console/live");
    source.addEventListener("alert", function () {
      count += 1;
      document.getElementById("live-count").textContent = String(count);
      live.hidden = false;
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }
})();

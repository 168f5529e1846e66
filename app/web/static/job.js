// The job page follows its job live: it re-fetches the status panel from this app (never
// from RunPod) every second until the job ends, then reloads once so the buttons match.
// Between fetches the execution time and cost tick on from the figures the server sent.
(function () {
  "use strict";
  var panel = document.getElementById("job-panel");
  if (!panel) return;
  var fetchedAt = performance.now();

  function tick() {
    var cell = document.getElementById("execution");
    if (!cell || !cell.dataset.elapsed) return;
    var seconds = parseFloat(cell.dataset.elapsed) + (performance.now() - fetchedAt) / 1000;
    cell.textContent = seconds.toFixed(1) + " s so far";
    var cost = document.getElementById("cost");
    var price = parseFloat(cell.dataset.price);
    if (cost && !isNaN(price)) cost.textContent = "$" + (seconds * price).toFixed(5) + " so far";
  }

  async function refresh() {
    try {
      var response = await fetch(panel.dataset.src, { cache: "no-store" });
      if (response.ok) {
        var html = await response.text();
        fetchedAt = performance.now();
        panel.innerHTML = html;
        if (response.headers.get("X-Job-Terminal") === "1") {
          location.reload();
          return;
        }
      }
    } catch (e) {
      // The app restarting or the network dropping: keep the last figures and try again.
    }
    setTimeout(refresh, 1000);
  }

  setInterval(tick, 200);
  if (panel.dataset.terminal !== "1") setTimeout(refresh, 1000);
})();

// The job page follows its job live: it re-fetches the status panel from this app (never
// from RunPod) every second until the job ends, then swaps in the finished page's body (the
// result and the buttons) without a reload. Between fetches the execution time and cost tick
// on from the figures the server sent. The headline goes to a polite live region when it
// changes, so a screen reader hears "running", then "done", without the panel being read.
(function () {
  "use strict";
  var panel = document.getElementById("job-panel");
  if (!panel) return;
  var live = document.getElementById("status-live");
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

  function announce() {
    var headline = document.getElementById("headline");
    if (live && headline && live.textContent !== headline.textContent) {
      live.textContent = headline.textContent;
    }
  }

  async function finish() {
    // The job ended: the finished page has the result and the Retry button.
    var response = await fetch(location.href, { cache: "no-store" });
    var doc = new DOMParser().parseFromString(await response.text(), "text/html");
    var body = doc.getElementById("job-body");
    if (!body) { location.reload(); return; }
    document.getElementById("job-body").replaceWith(body);
    if (window.localTimes) window.localTimes(body);
    announce();
  }

  async function refresh() {
    try {
      var response = await fetch(panel.dataset.src, { cache: "no-store" });
      if (response.ok) {
        var html = await response.text();
        fetchedAt = performance.now();
        panel.innerHTML = html;
        if (window.localTimes) window.localTimes(panel);
        announce();
        if (response.headers.get("X-Job-Terminal") === "1") {
          await finish();
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

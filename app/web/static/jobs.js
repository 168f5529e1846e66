// The jobs list follows its jobs while any is in flight: it re-fetches this same page (its
// filters included) every few seconds and swaps the list in place, and stops once every job
// shown has ended.
(function () {
  "use strict";
  var list = document.getElementById("jobs-list");
  if (!list) return;
  var every = (parseFloat(list.dataset.every) || 3) * 1000;

  async function refresh() {
    try {
      var response = await fetch(location.href, { cache: "no-store" });
      if (response.ok) {
        var doc = new DOMParser().parseFromString(await response.text(), "text/html");
        var fresh = doc.getElementById("jobs-list");
        if (fresh) {
          list.replaceWith(fresh);
          list = fresh;
          list.dataset.refreshed = String(Date.now());
          if (window.localTimes) window.localTimes(list);
        }
      }
    } catch (e) {
      // The app restarting: keep the list and try again.
    }
    if (list.dataset.inFlight !== "0") setTimeout(refresh, every);
  }

  if (list.dataset.inFlight !== "0") setTimeout(refresh, every);
})();

// The operator console refreshes itself: it re-fetches its panel from this app every few
// seconds (the app keeps the endpoint snapshot fresh while someone watches). A log the
// operator opened stays open across refreshes.
(function () {
  "use strict";
  var panel = document.getElementById("admin-panel");
  if (!panel) return;
  var every = (parseFloat(panel.dataset.every) || 3) * 1000;

  function openLogs() {
    var open = [];
    panel.querySelectorAll("tr[data-worker] details[open]").forEach(function (d) {
      open.push(d.closest("tr").dataset.worker);
    });
    return open;
  }

  async function refresh() {
    try {
      var response = await fetch(panel.dataset.src, { cache: "no-store" });
      if (response.status === 401 || response.redirected) {
        location.reload(); // the session ended: show the login page
        return;
      }
      if (response.ok) {
        var keep = openLogs();
        panel.innerHTML = await response.text();
        keep.forEach(function (id) {
          var row = panel.querySelector('tr[data-worker="' + CSS.escape(id) + '"] details');
          if (row) row.open = true;
        });
        panel.dataset.refreshed = String(Date.now());
      }
    } catch (e) {
      // The app restarting: keep what is shown and try again.
    }
    setTimeout(refresh, every);
  }

  setTimeout(refresh, every);
})();

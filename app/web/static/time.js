// Times are written by the server in UTC (<time datetime="...Z" title="... UTC">) so a page
// reads right without JavaScript; here they are shown in the reader's own time zone, the
// UTC figure staying on hover. Panels that replace their content call window.localTimes().
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      var when = new Date(t.getAttribute("datetime"));
      if (isNaN(when)) return;
      var clock = pad(when.getHours()) + ":" + pad(when.getMinutes()) + ":" + pad(when.getSeconds());
      var text = t.dataset.form === "clock" ? clock :
        when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate()) + " " + clock;
      t.textContent = text;
      t.dataset.local = "1";
    });
  }
  window.localTimes = localTimes;
  localTimes();
})();

// The upload form, improved where JavaScript runs (without it the form posts as usual):
// values are checked in the browser (the min/max/required attributes) before any byte is
// sent; the chosen video or image is previewed; the upload shows its progress; and an
// error, a too-large file (413) included, is shown in the form with the pipeline, the
// values and the chosen file all kept.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var file = form.querySelector("input[type=file]");
  var select = document.getElementById("pipeline");
  var button = form.querySelector("[type=submit]");
  var status = document.getElementById("upload-status");
  var bar = document.getElementById("upload-progress");
  var preview = document.getElementById("preview");
  var objectUrl = null;

  // Only the chosen pipeline's fields count: the others are disabled, so the browser
  // neither checks nor sends them.
  function enableChosen() {
    form.querySelectorAll("fieldset[data-pipeline]").forEach(function (f) {
      f.disabled = f.dataset.pipeline !== select.value;
    });
  }

  // The app's upload limit in bytes, as the page was given it (0: not known).
  function maxBytes() {
    return parseInt(form.dataset.maxBytes || "0", 10);
  }

  function showError(message) {
    var banner = document.getElementById("error");
    if (!banner) {
      banner = document.createElement("p");
      banner.id = "error";
      banner.className = "banner bad";
      banner.setAttribute("role", "alert");
      form.parentNode.insertBefore(banner, form);
    }
    banner.textContent = message;
    banner.scrollIntoView({ block: "nearest" });
  }

  function clearError() {
    var banner = document.getElementById("error");
    if (banner) banner.remove();
  }

  // Sizes as the app writes them (app/views/present.py human_bytes): 2 MiB, 2.5 MiB.
  function human(bytes) {
    if (bytes >= 1073741824) return (bytes / 1073741824).toFixed(2).replace(/\.00$/, "") + " GiB";
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1).replace(/\.0$/, "") + " MiB";
    return Math.max(1, Math.round(bytes / 1024)) + " KiB";
  }

  function showPreview() {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = null;
    preview.replaceChildren();
    var chosen = file.files && file.files[0];
    if (!chosen) return;
    var kind = (chosen.type || "").split("/")[0];
    var note = document.createElement("p");
    note.className = "muted";
    note.id = "preview-name";
    note.textContent = chosen.name + " · " + human(chosen.size);
    if (kind === "video" || kind === "image") {
      objectUrl = URL.createObjectURL(chosen);
      var media = document.createElement(kind === "video" ? "video" : "img");
      media.className = "preview";
      media.src = objectUrl;
      if (kind === "video") {
        media.controls = true;
        media.muted = true;
        media.preload = "metadata";
      } else {
        media.alt = "preview of " + chosen.name;
      }
      media.addEventListener("error", function () {
        // Not something this browser can play or show; the app checks it at upload.
        media.remove();
        note.textContent += " · no preview: this browser cannot read it";
      });
      preview.appendChild(media);
    }
    preview.appendChild(note);
    if (maxBytes() && chosen.size > maxBytes()) {
      showError("the file is " + human(chosen.size) + ", over the limit of " + human(maxBytes()) +
        ": choose a smaller file");
    } else {
      clearError();
    }
  }

  function errorFrom(xhr) {
    // The app answers a refused upload with the form page (or an error page) holding the
    // message in #error; JSON answers carry it in "error".
    var type = xhr.getResponseHeader("Content-Type") || "";
    try {
      if (type.indexOf("application/json") === 0) return JSON.parse(xhr.responseText).error;
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var banner = doc.getElementById("error");
      if (banner) return banner.textContent.trim();
    } catch (e) {
      // fall through to the status line
    }
    return "the upload was refused (HTTP " + xhr.status + ")";
  }

  function done() {
    button.disabled = false;
    bar.hidden = true;
  }

  form.addEventListener("submit", function (event) {
    enableChosen();
    if (!form.checkValidity()) {
      event.preventDefault();
      form.reportValidity();
      return;
    }
    var chosen = file.files && file.files[0];
    if (chosen && maxBytes() && chosen.size > maxBytes()) {
      event.preventDefault();
      showError("the file is " + human(chosen.size) + ", over the limit of " + human(maxBytes()) +
        ": choose a smaller file");
      return;
    }
    event.preventDefault();
    clearError();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "text/html");
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      status.textContent = "Uploading: " + human(e.loaded) + " of " + human(e.total) +
        " (" + Math.floor((100 * e.loaded) / e.total) + "%)";
    });
    xhr.upload.addEventListener("load", function () {
      status.textContent = "Uploaded; creating the job…";
    });
    xhr.addEventListener("load", function () {
      if (xhr.status >= 200 && xhr.status < 300 && /\/jobs\/[0-9a-f-]{36}$/.test(xhr.responseURL)) {
        status.textContent = "Job created; opening its page…";
        window.location.assign(xhr.responseURL);
        return;
      }
      done();
      status.textContent = "";
      showError(errorFrom(xhr));
    });
    xhr.addEventListener("error", function () {
      // A server refusing a too-large body (413) closes the connection while the browser is
      // still sending, which looks like a network error here: ask the app for its current
      // limit to tell the two apart.
      fetch(window.location.pathname, { cache: "no-store" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("upload-form");
          var limit = fresh ? parseInt(fresh.dataset.maxBytes || "0", 10) : 0;
          var chosen = file.files && file.files[0];
          if (limit) form.dataset.maxBytes = String(limit);
          if (limit && chosen && chosen.size > limit) {
            showError("the file is " + human(chosen.size) + ", over the limit of " +
              human(limit) + ": nothing was stored; choose a smaller file");
          } else {
            throw new Error("not a size problem");
          }
        })
        .catch(function () {
          showError("the upload did not reach the app (connection lost): check the network " +
            "and press Upload again");
        })
        .finally(function () {
          done();
          status.textContent = "";
        });
    });
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading…";
    xhr.send(new FormData(form));
  });

  file.addEventListener("change", showPreview);
  select.addEventListener("change", enableChosen);
  enableChosen();
  showPreview();
})();

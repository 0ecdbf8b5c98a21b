// corequeue dashboard: confirmations and the overview's auto-refresh. Everything works without it.
(function () {
  "use strict";

  // Forms with data-confirm ask first; the server shows its own confirm page when JS is off.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    var field = form.querySelector('input[name="confirm"]');
    if (field) field.value = "yes";
  });

  // Running jobs show how long they have run, ticking each second (data-started: ISO time).
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".elapsed[data-started]").forEach(function (el) {
      var secs = Math.max((now - Date.parse(el.dataset.started)) / 1000, 0);
      var m = Math.floor(secs / 60), h = Math.floor(m / 60);
      el.textContent = h ? h + " h " + (m % 60) + " min" : m ? m + " min " + Math.floor(secs % 60) + " s" : secs.toFixed(1) + " s";
    });
  }
  window.setInterval(tick, 1000);

  // The overview refreshes its body from ?fragment=1 while the tab is visible.
  var box = document.getElementById("overview");
  var status = document.getElementById("refresh-status");
  if (!box || !status) return;
  var every = Math.max(parseFloat(status.dataset.refreshSeconds || "5"), 1) * 1000;
  var busy = false;
  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(box.dataset.fragment, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        status.textContent = "live · refreshes every " + Math.round(every / 1000) + " s";
        status.classList.remove("error-text");
      })
      .catch(function (error) {
        status.textContent = "refresh failed (" + error.message + "), retrying";
        status.classList.add("error-text");
      })
      .finally(function () { busy = false; });
  }
  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();

/* The alerts page, live: the server renders it; when an alert changes (a live.alerts frame on the
 * alerts-only socket) the open alerts and the history rows are fetched again from the same URL and
 * put in place of the old ones. The HTML is the server's own rendering of this page (every value
 * escaped by its templates), so one renderer serves the first paint and every update.
 * A refresh waits while someone types in the open panel (an acknowledgement comment).
 */
(function () {
  "use strict";

  var L = window.FluxoLive;
  var PARTS = ["open-panel", "history-rows"];
  var MIN_GAP_MS = 1000;
  var status = document.getElementById("live-status");
  var wanted = false, last = 0;

  function typing() {
    var open = document.getElementById("open-panel");
    return open && open.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
  }

  function render(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    PARTS.forEach(function (id) {
      var here = document.getElementById(id), there = fresh.getElementById(id);
      if (here && there) here.replaceWith(document.adoptNode(there));
    });
    L.localiseTimes(document);
    last = Date.now();
  }

  var loop = L.livePage({
    socketUrl: function () { return status.dataset.socket; },
    snapshot: function () {
      return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      });
    },
    render: render,
    failed: function () { /* the next change or reconnection tries again */ },
    apply: function (frames) {
      if (frames.some(function (f) { return f.type === "live.alerts"; })) wanted = true;
      if (wanted && !typing() && Date.now() - last >= MIN_GAP_MS) { wanted = false; loop.resync(); }
    },
  });
})();

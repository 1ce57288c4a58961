/* Pages of one stream (audit, notifications): a snapshot for the chosen source and range, then that
 * stream's events live over a WebSocket tail. New events go on top of the page's feed; the page's
 * aggregates are refreshed from a new snapshot at most every REFRESH_MS while events arrive.
 */
window.FluxoStreamPage = function (page) {
  "use strict";

  var REDRAW_MS = 250;
  var REFRESH_MS = 3000;
  var FEED_MAX = 50;
  var L = window.FluxoLive;
  var config = JSON.parse(document.getElementById("page-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var state = { sources: config.sources, window: null, stale: false, ids: new Set() };

  function sourceName(id) {
    var found = state.sources.find(function (s) { return s.id === id; });
    return found ? found.name : "#" + id;
  }

  /* Replace the feed's rows with ``items`` (newest first), or put new ones on top. */
  function feed(items, replace) {
    var body = $("feed").tBodies[0];
    if (replace) { body.replaceChildren(); state.ids = new Set(); }
    items.slice().reverse().forEach(function (item) {
      if (state.ids.has(item.id) || (page.inFeed && !page.inFeed(item))) return;
      state.ids.add(item.id);
      var tr = page.feedRow(item, api);
      tr.dataset.id = item.id;
      body.insertBefore(tr, body.firstChild);
    });
    while (body.rows.length > FEED_MAX) { state.ids.delete(Number(body.lastChild.dataset.id)); body.removeChild(body.lastChild); }
  }

  function apply(frames) {
    frames.forEach(function (frame) {
      if (frame.type !== "live.tail") return;
      // A range that ends before now takes nothing new; one that holds now, what falls in it.
      var taken = frame.events.filter(function (item) { return L.takesLive(state.window, item.received_at); });
      if (!taken.length) return;
      feed(taken, false);
      state.stale = true;
    });
    if (state.stale && Date.now() - loop.lastSync > REFRESH_MS) { state.stale = false; loop.resync(); }
  }

  var api = { sourceName: sourceName, feed: feed, cell: L.cell, linkCell: L.linkCell, shownTime: L.shownTime };
  var loop = L.livePage({
    redrawMs: REDRAW_MS,
    socketUrl: function () {
      return config.socketPath + "?view=tail&stream=" + encodeURIComponent(config.stream) + "&source=" + encodeURIComponent($("source").value);
    },
    snapshot: function () { return L.getJson(config.snapshotUrl + "?" + L.scopeParams().toString()); },
    render: function (snap) {
      state.sources = snap.sources;
      state.window = snap.window;
      $("snapshot-error").textContent = "";
      page.render(snap, api);
    },
    failed: function (error) { $("snapshot-error").textContent = "Could not load the page: " + error.message; },
    apply: apply,
  });

  L.watchScope(function (sourceChanged) { if (sourceChanged) loop.replace(); else loop.resync(); });
  return api;
};

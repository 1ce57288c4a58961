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
  var state = { sources: config.sources, window: null, buffer: [], syncing: true, seq: 0, lastSync: 0, stale: false, ids: new Set(), socketSource: null };

  function sourceName(id) {
    var found = state.sources.find(function (s) { return s.id === id; });
    return found ? found.name : "#" + id;
  }

  function resync() {
    state.syncing = true;
    var seq = ++state.seq;
    L.getJson(config.snapshotUrl + "?" + L.scopeParams().toString()).then(function (snap) {
      if (!snap || seq !== state.seq) return;
      state.sources = snap.sources;
      state.window = snap.window;
      $("snapshot-error").textContent = "";
      page.render(snap, api);
      state.lastSync = Date.now();
      state.stale = false;
      state.syncing = false;
    }).catch(function (error) {
      $("snapshot-error").textContent = "Could not load the page: " + error.message;
      state.syncing = false;
    });
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

  function draw() {
    if (state.syncing) return;
    var frames = state.buffer;
    state.buffer = [];
    frames.forEach(function (frame) {
      if (frame.type !== "live.tail") return;
      // A range that ends before now takes nothing new; one that holds now, what falls in it.
      var taken = frame.events.filter(function (item) { return L.takesLive(state.window, item.received_at); });
      if (!taken.length) return;
      feed(taken, false);
      state.stale = true;
    });
    if (state.stale && Date.now() - state.lastSync > REFRESH_MS) resync();
  }

  var connection = new L.Connection({
    url: function () {
      state.socketSource = $("source").value;
      return config.socketPath + "?view=tail&stream=" + encodeURIComponent(config.stream) + "&source=" + encodeURIComponent(state.socketSource);
    },
    onOpen: function () { state.buffer = []; resync(); },
    onFrame: function (frame) { state.buffer.push(frame); if (state.buffer.length > 2000) { state.buffer = []; state.stale = true; } },
  });

  function changed(sourceChanged) {
    if (sourceChanged) { state.syncing = true; connection.replace(); } else { resync(); }
  }

  var api = { sourceName: sourceName, feed: feed, cell: L.cell, shownTime: L.shownTime };
  L.watchScope(changed);
  L.scheduleDraws(REDRAW_MS, draw, connection);
  connection.open();
  return api;
};

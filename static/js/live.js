/* What every live page shares: text put in safely, times in the viewer's zone, and the live-page loop
 * (livePage: a WebSocket that reconnects with backoff and jitter, a snapshot re-sync on every
 * (re)connection, frames buffered and drawn on a clock). Every text from an event goes in with textContent.
 */
window.FluxoLive = (function () {
  "use strict";

  var BACKOFF_MS = [1000, 2000, 5000, 10000, 30000];
  var zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
  var readable = new Intl.DateTimeFormat(undefined, { timeZone: zone, dateStyle: "medium", timeStyle: "medium" });

  /* A type's colour from its key, as dashboard.figures.colour_of: FNV-1a of the key's code points. */
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];
  function colourOf(key) {
    if (key === "other") return "#7f7f7f";
    var h = 0x811c9dc5;
    for (var ch of String(key)) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function cell(tag, value, className) {
    var node = document.createElement(tag);
    node.textContent = value === null || value === undefined ? "" : String(value);
    if (className) node.className = className;
    return node;
  }

  /* A table cell whose text links to ``url`` (an event page's address, built by the server; never event text). */
  function linkCell(value, url) {
    var td = document.createElement("td");
    if (!url) { td.textContent = value === null || value === undefined ? "" : String(value); return td; }
    var link = cell("a", value);
    link.href = url;
    td.append(link);
    return td;
  }

  function parseTime(iso) {
    // Python writes microseconds; keep milliseconds, which every Date parser reads.
    return Date.parse(String(iso).replace(/(\.\d{3})\d+/, "$1"));
  }

  function shownTime(iso) {
    return iso ? readable.format(new Date(parseTime(iso))) : "never";
  }

  /* Server-rendered <time datetime="…"> elements, shown in the viewer's zone. */
  function localiseTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (node) {
      node.textContent = shownTime(node.getAttribute("datetime"));
      node.title = node.getAttribute("datetime");
    });
  }

  /* The badge says what is true: live, reconnecting (just dropped), or stale since the moment the
   * page last had a socket (still down after STALE_AFTER_MS), or paused while the tab is hidden. */
  var STALE_AFTER_MS = 10000;
  function setStatus(text, kind) {
    var node = document.getElementById("live-status");
    if (!node) return;
    node.textContent = text;
    node.className = "status" + (kind ? " " + kind : "");
  }

  /* What the test suite and a curious person can read: sockets opened, and dropped by the server. */
  var stats = { opened: 0, drops: 0 };

  /* A socket to ``url()`` that reconnects with backoff; ``onOpen`` (at the server's hello) is where a
   * page re-syncs from a snapshot, ``onFrame`` gets every other parsed frame. */
  function Connection(options) {
    this.options = options;
    this.socket = null;
    this.attempt = 0;
    this.live = false;
    this.downSince = null; // when the page last stopped hearing the server (null: it hears it)
  }

  Connection.prototype.open = function () {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + self.options.url());
    self.socket = socket;
    stats.opened += 1;
    if (self.downSince === null) setStatus("connecting…", "");
    socket.onopen = function () { self.attempt = 0; };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type !== "live.hello" && frame.type !== "live.sources") { self.options.onFrame(frame); return; }
      // The server says hello once its tick listens: a snapshot taken now misses nothing after it.
      // It says live.sources when the socket follows other sources (one added, or one no longer
      // visible): the page re-syncs the same way.
      self.live = true;
      self.downSince = null;
      self.showStatus();
      self.options.onOpen(frame);
    };
    socket.onclose = function () {
      if (self.socket !== socket) return; // replaced on purpose
      if (self.live) stats.drops += 1;
      self.live = false;
      if (self.downSince === null) self.downSince = Date.now();
      var base = BACKOFF_MS[Math.min(self.attempt, BACKOFF_MS.length - 1)];
      var wait = Math.round(base * (0.5 + Math.random() / 2));
      self.attempt += 1;
      self.showStatus(wait);
      setTimeout(function () { self.showStatus(); }, STALE_AFTER_MS);
      setTimeout(function () { if (self.socket === socket) self.open(); }, wait);
    };
  };

  Connection.prototype.showStatus = function (wait) {
    if (document.hidden) { setStatus("paused while the tab is hidden", "paused"); return; }
    if (this.live) { setStatus("live", "live"); return; }
    if (this.downSince === null) { setStatus("connecting…", ""); return; }
    var later = wait ? "; next try in " + Math.ceil(wait / 1000) + " s" : "";
    if (Date.now() - this.downSince < STALE_AFTER_MS) { setStatus("reconnecting…" + later, "reconnecting"); return; }
    setStatus("stale since " + readable.format(new Date(this.downSince)) + "; reconnecting" + later, "stale");
  };

  /* Close and open again (e.g. other filters or another source). */
  Connection.prototype.replace = function () {
    var old = this.socket;
    this.socket = null;
    this.live = false;
    if (old) old.close();
    this.open();
  };

  Connection.prototype.isOpen = function () {
    return this.socket !== null && this.socket.readyState === 1;
  };

  /* Run ``draw`` at most every ``ms``, never while the tab is hidden, and once more when it comes back. */
  function scheduleDraws(ms, draw, connection) {
    setInterval(function () { if (!document.hidden) draw(); }, ms);
    document.addEventListener("visibilitychange", function () {
      connection.showStatus();
      if (!document.hidden) draw();
    });
  }

  /* The loop every live page shares: a socket (reconnecting with backoff), a snapshot on every hello
   * (first paint, reconnect, other sources), frames buffered while a snapshot loads or the tab is
   * hidden, then handed to ``page.apply(frames)`` at most every ``page.redrawMs``.
   *
   * ``page``: socketUrl() → path; snapshot() → promise of a snapshot (or null: superseded);
   * render(snap); apply(frames) (also called with [] so a page can refresh on its own clock);
   * optional immediate(frame) → true when the page handled a frame at once (not buffered);
   * failed(error); bufferMax (frames kept; beyond, drop them and re-sync). */
  function livePage(page) {
    var loop = { buffer: [], syncing: true, seq: 0, needsResync: false, lastSync: 0 };
    var bufferMax = page.bufferMax || 2000;

    loop.resync = function () {
      loop.syncing = true;
      var seq = ++loop.seq;
      return page.snapshot().then(function (snap) {
        if (!snap || seq !== loop.seq) return;  // superseded by a newer request
        page.render(snap);
        loop.syncing = false;
        loop.needsResync = false;
        loop.lastSync = Date.now();
        draw();
      }).catch(function (error) {
        page.failed(error);
        loop.syncing = false;
      });
    };

    function draw() {
      if (document.hidden || loop.syncing) return;
      if (loop.needsResync) { loop.resync(); return; }
      var frames = loop.buffer;
      loop.buffer = [];
      page.apply(frames);
    }

    var connection = new Connection({
      url: page.socketUrl,
      onOpen: function () { loop.buffer = []; loop.resync(); },
      onFrame: function (frame) {
        if (page.immediate && page.immediate(frame)) return;
        loop.buffer.push(frame);
        if (loop.buffer.length > bufferMax) { loop.buffer = []; loop.needsResync = true; }
      },
    });

    /* Another socket (other sources or filters): frames of the old one must not be drawn meanwhile. */
    loop.replace = function () { loop.syncing = true; loop.buffer = []; connection.replace(); };
    loop.connection = connection;
    scheduleDraws(page.redrawMs || 250, draw, connection);
    connection.open();
    return loop;
  }

  /* The source and range pickers every page shares (templates/dashboard/_scope.html). */
  function byId(id) { return document.getElementById(id); }

  /* ``params`` (a URLSearchParams, or a new one) with the chosen source, range and the viewer's zone. */
  function scopeParams(params) {
    params = params || new URLSearchParams();
    params.set("source", byId("source").value);
    params.set("range", byId("range").value);
    if (byId("range").value === "custom") { params.set("since", byId("since").value); params.set("until", byId("until").value); }
    params.set("tz", zone);
    return params;
  }

  /* Call ``onChange(sourceChanged)`` when a complete choice is made (a custom range needs both ends);
   * returns choose({range, since, until}), which makes a choice as the person would. */
  function watchScope(onChange) {
    var source = byId("source").value;
    function changed() {
      byId("custom-range").hidden = byId("range").value !== "custom";
      if (byId("range").value === "custom" && (!byId("since").value || !byId("until").value)) return;
      var sourceChanged = byId("source").value !== source;
      source = byId("source").value;
      onChange(sourceChanged);
    }
    byId("zone").textContent = zone;
    byId("source").addEventListener("change", changed);
    byId("range").addEventListener("change", changed);
    byId("apply-range").addEventListener("click", changed);
    return choose;

    /* The range chosen for the person (a zoom on a chart): the pickers show it, the page follows it. */
    function choose(range) {
      byId("range").value = range.range;
      byId("since").value = range.since || "";
      byId("until").value = range.until || "";
      changed();
    }
  }

  /* What the range pickers show now, for choose() to go back to. */
  function chosenRange() {
    return { range: byId("range").value, since: byId("since").value, until: byId("until").value };
  }

  /* Whether an event received at ``iso`` belongs to a snapshot's window and arrives live into it: the
   * window must reach past now; a sliding one takes everything new, a fixed one what falls before its end. */
  function takesLive(win, iso) {
    if (!win || !win.live) return false;
    var at = parseTime(iso);
    return at >= parseTime(win.since) && (win.sliding || at < parseTime(win.until));
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      if (response.status === 401) { window.location.assign("/accounts/login/?next=" + encodeURIComponent(window.location.pathname)); return null; }
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body.detail || ("HTTP " + response.status));
        return body;
      });
    });
  }

  return {
    zone: zone, cell: cell, linkCell: linkCell, parseTime: parseTime, shownTime: shownTime, localiseTimes: localiseTimes,
    setStatus: setStatus, Connection: Connection, livePage: livePage, stats: stats, getJson: getJson,
    scopeParams: scopeParams, watchScope: watchScope, chosenRange: chosenRange, takesLive: takesLive, colourOf: colourOf,
  };
})();

/* The overview page: a snapshot over HTTP, then live deltas over a WebSocket.
 *
 * - Frames are buffered and applied at most every REDRAW_MS, never while the tab is hidden.
 * - New buckets are appended with Plotly.extendTraces (capped at the window's bucket count); a bucket
 *   already drawn is updated in place.
 * - The socket reconnects with backoff and jitter; every (re)connection re-syncs from a snapshot,
 *   which names the batches it holds so that no delta is counted twice.
 * - Every text that comes from an event goes in with textContent, or escaped for Plotly's
 *   pseudo-HTML: never innerHTML.
 */
(function () {
  "use strict";

  var REDRAW_MS = 250;
  var FEED_MAX = 50;
  var BUFFER_MAX = 2000; // frames kept while hidden; beyond, drop them and re-sync when visible
  var MAX_TRACES = 10;
  var RESYNC_MS = 5 * 60 * 1000; // a live window re-syncs now and then (old buckets leave the totals)
  var REASONS = ["auth", "signature", "malformed", "too_large"];
  var HOVER = "%{y:.1f} per minute · click to list them<extra>%{fullData.name}</extra>"; // dashboard.figures.HOVER
  // A drag zooms (it sets the range); panning, box selection and the zoom buttons would not.
  var CHART_CONFIG = {
    displaylogo: false, responsive: true,
    showTips: false, // its "double-click to zoom back out" would cover the range pickers; the page says it
    modeBarButtonsToRemove: ["pan2d", "select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "resetScale2d"],
  };

  var config = JSON.parse(document.getElementById("overview-config").textContent);
  var zone = window.FluxoLive.zone;
  var $ = function (id) { return document.getElementById(id); };

  var state = {
    snap: null,        // the last snapshot
    included: null,    // {through, pending: Set}: batches the snapshot already counts
    epochs: [],        // bucket starts (ms) drawn on the chart, oldest first
    traceOf: new Map(),// type key -> trace index
    feedIds: new Set(),
    health: new Map(), // source id -> health row, kept live (liveHealth)
    rules: null,       // the windows health values are computed over (the snapshot's health_rules)
    topTypes: new Map(),
    drillBound: false,
    back: [],          // the ranges chosen before each zoom (a double-click goes back to the last)
  };

  var L = window.FluxoLive;
  var cell = L.cell, parseTime = L.parseTime, shownTime = L.shownTime;

  function plotlyText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  var plotlyParts = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });

  function plotlyTime(ms) {
    var p = {};
    plotlyParts.formatToParts(new Date(ms)).forEach(function (part) { p[part.type] = part.value; });
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
  }

  // --- Snapshot -----------------------------------------------------------------------------------------

  var alertsPanel = new window.FluxoAlertsPanel.Panel($("firing-alerts"));

  function draw(snap) {
    state.snap = snap;
    state.included = { through: snap.included.through, pending: new Set(snap.included.pending) };
    $("snapshot-error").textContent = "";
    drawChart(snap.figure, snap.window);
    drawTotals(snap.totals);
    state.topTypes = new Map(snap.top_types.map(function (t) { return [t.key, { label: t.label, events: t.events }]; }));
    drawTopTypes();
    state.feedIds = new Set();
    var body = $("feed").tBodies[0];
    body.replaceChildren();
    snap.feed.slice().reverse().forEach(function (item) { addFeedRow(item, snap.sources); });
    state.rules = snap.health_rules;
    state.health = new Map(snap.health.map(function (h) { return [h.source, liveHealth(h)]; }));
    drawHealth();
  }

  // --- Chart --------------------------------------------------------------------------------------------

  function drawChart(figure, window_) {
    var chart = $("rate-chart");
    var since = parseTime(window_.since);
    var step = window_.bucket_seconds * 1000;
    state.epochs = [];
    for (var t = since; t < parseTime(window_.until); t += step) state.epochs.push(t);
    state.traceOf = new Map(figure.data.map(function (trace, i) { return [trace.meta.key, i]; }));
    Plotly.react(chart, figure.data, figure.layout, CHART_CONFIG);
    if (!state.drillBound) { bindDrill(chart); state.drillBound = true; }
  }

  function traceFor(key, label) {
    var chart = $("rate-chart");
    if (state.traceOf.has(key)) return state.traceOf.get(key);
    if (state.traceOf.size >= MAX_TRACES - 1 && key !== "other") return traceFor("other", "Other types");
    var index = chart.data.length;
    Plotly.addTraces(chart, {
      type: "bar", name: plotlyText(label), meta: { key: key },
      x: state.epochs.map(plotlyTime), y: state.epochs.map(function () { return 0; }),
      marker: { color: L.colourOf(key) },  // by key, as the server colours it: the same on every page
      hovertemplate: HOVER,
    });
    state.traceOf.set(key, index);
    if (index === 0) Plotly.relayout(chart, { "xaxis.autorange": true, annotations: [] });
    return index;
  }

  function counted(row) {
    var inc = state.included;
    return row.batch > inc.through || inc.pending.has(row.batch);
  }

  function applyCounts(rows) {
    var win = state.snap.window;
    if (!rows.length) return;
    var step = win.bucket_seconds * 1000;
    var perMinute = win.bucket_seconds / 60;
    var inPlace = new Map();  // trace -> Map(bucket index -> added)
    var appended = new Map(); // bucket ms -> Map(trace -> added)
    var last = state.epochs[state.epochs.length - 1];
    rows.forEach(function (row) {
      var bucket = Math.floor(parseTime(row.at) / step) * step;
      var trace = traceFor(row.key, row.label);
      var value = row.n / perMinute;
      if (bucket > last) {
        if (!appended.has(bucket)) appended.set(bucket, new Map());
        var m = appended.get(bucket);
        m.set(trace, (m.get(trace) || 0) + value);
        return;
      }
      var k = state.epochs.indexOf(bucket);
      if (k < 0) return; // before the window
      if (!inPlace.has(trace)) inPlace.set(trace, new Map());
      var b = inPlace.get(trace);
      b.set(k, (b.get(k) || 0) + value);
    });
    updateInPlace(inPlace);
    extend(appended, step);
  }

  function updateInPlace(inPlace) {
    if (!inPlace.size) return;
    var chart = $("rate-chart");
    var indices = [], ys = [];
    inPlace.forEach(function (added, trace) {
      var y = chart.data[trace].y.slice();
      added.forEach(function (value, k) { y[k] = (y[k] || 0) + value; });
      indices.push(trace);
      ys.push(y);
    });
    Plotly.restyle(chart, { y: ys }, indices);
  }

  function extend(appended, step) {
    if (!appended.size) return;
    var chart = $("rate-chart");
    var last = state.epochs[state.epochs.length - 1];
    var newest = Math.max.apply(null, Array.from(appended.keys()));
    var cap = state.epochs.length; // the window keeps its width: old buckets leave as new ones come
    var buckets = [];
    for (var t = Math.max(last + step, newest - (cap - 1) * step); t <= newest; t += step) buckets.push(t);
    var indices = chart.data.map(function (_, i) { return i; });
    var update = {
      x: indices.map(function () { return buckets.map(plotlyTime); }),
      y: indices.map(function (i) {
        return buckets.map(function (t) { return (appended.get(t) && appended.get(t).get(i)) || 0; });
      }),
    };
    Plotly.extendTraces(chart, update, indices, cap);
    state.epochs = state.epochs.concat(buckets).slice(-cap);
  }

  // --- Drill-down and zoom -----------------------------------------------------------------------------
  // A bar opens the search for its type (and the chosen source) over its bucket; a legend entry, for its
  // type over the range; a drag across the time axis chooses that span as the range (a custom one).

  /* The search's filters for a type key ("stream|type|activity type id", dashboard.labels.type_key): an
   * activity type by its id, any other by its text; "other" (the types without a trace) none. */
  function typeFilter(key) {
    if (key === "other") return {};
    var first = key.indexOf("|"), last = key.lastIndexOf("|");
    return { stream: key.slice(0, first), type: key.slice(last + 1) || key.slice(first + 1, last) };
  }

  /* A moment as a datetime-local input shows it in the viewer's zone (buckets start on whole minutes). */
  function inputTime(ms) { return plotlyTime(ms).slice(0, 16).replace(" ", "T"); }

  function searchUrl(key, sinceMs, untilMs) {
    var params = new URLSearchParams({
      source: $("source").value, range: "custom", since: inputTime(sinceMs), until: inputTime(untilMs), tz: zone,
    });
    var filter = typeFilter(key);
    if (filter.stream) params.set("stream", filter.stream);
    if (filter.type) params.set("type", filter.type);
    return config.eventsUrl + "?" + params.toString();
  }

  function openBar(point) {
    var trace = point.data;
    var x = trace.x[point.pointNumber];
    var bucket = state.epochs.find(function (t) { return plotlyTime(t) === x; });
    if (bucket === undefined) return;
    window.location.assign(searchUrl(trace.meta.key, bucket, bucket + state.snap.window.bucket_seconds * 1000));
  }

  /* The whole range, or its last searchMaxDays (what one search covers at most). */
  function openType(key) {
    var win = state.snap.window;
    var until = parseTime(win.until);
    var since = Math.max(parseTime(win.since), until - config.searchMaxDays * 86400000);
    window.location.assign(searchUrl(key, since, until));
  }

  /* A naive local time from the chart's axis ("2026-04-20 18:03:27.5") to whole minutes, down or up, as
   * a datetime-local input takes it (wall-clock arithmetic, done in UTC so no zone shifts it). */
  var AXIS_TIME = /^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d(?:\.\d*)?))?)?/;
  function axisMinute(text, up) {
    var m = AXIS_TIME.exec(String(text));
    if (!m) return null;
    var ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0));
    if (up && Number(m[6] || 0) > 0) ms += 60000;
    return ms;
  }

  function zoomed(update, choose) {
    var range = update["xaxis.range"] || [update["xaxis.range[0]"], update["xaxis.range[1]"]];
    var since = axisMinute(range[0], false), until = axisMinute(range[1], true);
    if (since === null || until === null) return; // not a zoom (autorange, a resize, a legend click)
    if (until <= since) until = since + 60000;
    var iso = function (ms) { return new Date(ms).toISOString().slice(0, 16); };
    state.back.push(L.chosenRange());
    choose({ range: "custom", since: iso(since), until: iso(until) });
  }

  function bindDrill(chart) {
    // A double-click's first click reaches plotly_click too: a bar opens once no second click follows.
    var pending = null;
    chart.on("plotly_click", function (event) {
      if (!event.points.length) return;
      var point = event.points[0];
      clearTimeout(pending);
      pending = setTimeout(function () { openBar(point); }, chart._context.doubleClickDelay || 300);
    });
    chart.on("plotly_legendclick", function (event) {
      if (event.event && (event.event.shiftKey || event.event.altKey)) return true; // Plotly's own: hide or show
      openType(event.data[event.curveNumber].meta.key);
      return false;
    });
    chart.on("plotly_relayout", function (update) { zoomed(update, choose); });
    chart.on("plotly_doubleclick", function () {
      clearTimeout(pending);
      if (state.back.length) choose(state.back.pop());
    });
  }

  // --- Totals, top types, feed, health ----------------------------------------------------------------

  function drawTotals(totals) {
    var s = totals.by_stream;
    $("total-events").textContent = totals.events.toLocaleString();
    $("total-streams").textContent = "activities " + (s.activity || 0).toLocaleString() + " · audit " +
      (s.audit || 0).toLocaleString() + " · notifications " + (s.notification || 0).toLocaleString();
  }

  function applyTotals(rows) {
    var totals = state.snap.totals;
    rows.forEach(function (row) {
      totals.events += row.n;
      totals.by_stream[row.stream] = (totals.by_stream[row.stream] || 0) + row.n;
      var top = state.topTypes.get(row.key) || { label: row.label, events: 0 };
      top.events += row.n;
      state.topTypes.set(row.key, top);
    });
    drawTotals(totals);
    drawTopTypes();
  }

  function drawTopTypes() {
    var body = $("top-types").tBodies[0];
    var ranked = Array.from(state.topTypes.values()).sort(function (a, b) { return b.events - a.events; }).slice(0, 10);
    var all = ranked.reduce(function (sum, t) { return sum + t.events; }, 0) || 1;
    body.replaceChildren.apply(body, ranked.map(function (t) {
      var tr = document.createElement("tr");
      tr.append(cell("td", t.label), cell("td", t.events.toLocaleString(), "num"),
        cell("td", Math.round(100 * t.events / Math.max(all, state.snap.totals.events || 1)) + " %", "num"));
      return tr;
    }));
  }

  function sourceName(id, sources) {
    var found = (sources || state.snap.sources).find(function (s) { return s.id === id; });
    return found ? found.name : "#" + id;
  }

  function addFeedRow(item, sources) {
    if (state.feedIds.has(item.id)) return;
    state.feedIds.add(item.id);
    var tr = document.createElement("tr");
    tr.dataset.id = item.id;
    tr.append(L.linkCell(shownTime(item.received_at), item.url), cell("td", sourceName(item.source, sources)),
      cell("td", item.label), cell("td", item.lead), cell("td", item.user), cell("td", item.detail));
    var body = $("feed").tBodies[0];
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > FEED_MAX) {
      state.feedIds.delete(Number(body.lastChild.dataset.id));
      body.removeChild(body.lastChild);
    }
  }

  /* A snapshot's health row, made ready to follow the deltas: its per-minute counts as a Map (ms ->
   * events) and the batches its lag sample holds. */
  function liveHealth(h) {
    h.minutes = new Map(h.minutes.map(function (m) { return [m[0] * 1000, m[1]]; }));
    h.lagBatches = new Set(h.lags.map(function (l) { return l[0]; }));
    return h;
  }

  /* A delta's share of its source's row: the rows the snapshot does not hold yet, and the lags of
   * batches its sample does not. */
  function applyHealth(h, frame, rows) {
    rows.forEach(function (row) {
      var minute = Math.floor(parseTime(row.at) / 60000) * 60000;
      h.minutes.set(minute, (h.minutes.get(minute) || 0) + row.n);
    });
    var fresh = (frame.lags || []).filter(function (l) { return !h.lagBatches.has(l[0]); });
    fresh.forEach(function (l) { h.lagBatches.add(l[0]); });
    h.lags = fresh.concat(h.lags).slice(0, state.rules.lag_sample);
    if (!h.last_event_at || parseTime(frame.last_event_at) > parseTime(h.last_event_at)) h.last_event_at = frame.last_event_at;
  }

  /* Counters only grow (a frame read before the snapshot may arrive after it): keep the larger. */
  function applyCounters(h, counters) {
    ["accepted", "duplicates", "foreign", "unavailable"].forEach(function (name) { h[name] = Math.max(h[name] || 0, counters[name] || 0); });
    REASONS.forEach(function (r) { h.rejected[r] = Math.max(h.rejected[r] || 0, counters.rejected[r] || 0); });
    if (counters.archive !== undefined) h.archive = counters.archive;
  }

  /* Nearest rank, as dashboard.health.percentile. */
  function percentile(sorted, fraction) {
    if (!sorted.length) return null;
    var rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
    return Math.round(sorted[rank] * 10) / 10;
  }

  /* Events per minute and lag percentiles now, over the same windows as the server. */
  /* Events a minute over the rate window, as dashboard.health.per_minute: from the first minute with
   * events (left out once a complete minute follows it) to now, over at least a minute. */
  function perMinute(minutes, now) {
    var active = [];
    minutes.forEach(function (n, minute) { if (n && minute >= now - state.rules.rate_window_s * 1000 && minute <= now) active.push(minute); });
    if (!active.length) return 0;
    active.sort(function (a, b) { return a - b; });
    var start = active[0] + 60000 < Math.floor(now / 60000) * 60000 ? active[0] + 60000 : active[0];
    var events = 0;
    minutes.forEach(function (n, minute) { if (minute >= start && minute <= now) events += n; });
    return Math.round(100 * events / Math.max(1, (now - start) / 60000)) / 100;
  }

  function currentValues(h) {
    var now = Date.now(), rules = state.rules;
    var lags = h.lags.filter(function (l) { return l[1] * 1000 >= now - rules.lag_window_s * 1000; })
      .map(function (l) { return l[2]; }).sort(function (a, b) { return a - b; });
    return {
      perMinute: perMinute(h.minutes, now),
      p50: percentile(lags, 0.5), p95: percentile(lags, 0.95),
    };
  }

  function stateText(h) {
    if (!h.last_event_at) return ["never", "no event received yet"];
    var quiet = Date.now() - parseTime(h.last_event_at);
    var minutes = Math.floor(quiet / 60000);
    if (quiet >= state.rules.silent_after_s * 1000) {
      return ["silent", "silent for " + minutes + (minutes === 1 ? " minute" : " minutes")];
    }
    return ["ok", "receiving"];
  }

  /* The source's Adobe registrations: "name: level", what to do on hover (dashboard.health.registrations). */
  function registrationCell(registrations) {
    var text = registrations.map(function (r) { return r.name + ": " + r.level.replace(/_/g, " "); }).join("; ");
    var td = cell("td", text || "–", registrations.some(function (r) { return r.level !== "active"; }) ? "state silent" : "");
    td.title = registrations.map(function (r) { return r.name + ": " + r.advice; }).join("\n");
    return td;
  }

  /* The source's archive (dashboard.health.archive_states): ok, behind or failing, with its days. */
  function archiveCell(archive) {
    if (!archive) return cell("td", "–", "archive");
    var days = function (n) { return n + (n === 1 ? " day" : " days"); };
    var text = archive.state === "failing" ? "failing: " + days(archive.failing_days)
      : archive.state === "behind" ? "behind: " + days(archive.backlog_days) : "ok";
    if (archive.last_archived_day) text += " (last " + archive.last_archived_day + ")";
    return cell("td", text, "archive " + (archive.state === "ok" ? "state ok" : "state silent"));
  }

  // A lag in seconds as people read it: "2.4 s", "14 min", "3.2 h", "226 days" (a backfill's is old).
  function duration(seconds) {
    var s = Number(seconds);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " days";
  }

  function drawHealth() {
    var body = $("health").tBodies[0];
    var rows = Array.from(state.health.values()).map(function (h) {
      var tr = document.createElement("tr");
      var st = stateText(h);
      var now = currentValues(h);
      var lag = now.p50 === null ? "–" : duration(now.p50) + " / " + duration(now.p95);
      var refused = REASONS.map(function (r) { return h.rejected[r] || 0; }).join(" / ");
      tr.dataset.source = h.source;
      tr.append(cell("td", h.name), cell("td", h.munchkin_id), cell("td", st[1], "state " + st[0]),
        cell("td", shownTime(h.last_event_at)), cell("td", now.perMinute, "num per-minute"), cell("td", lag, "num lag"),
        cell("td", h.duplicates, "num"), cell("td", h.foreign || 0, "num foreign"), cell("td", refused, "num"),
        cell("td", h.unavailable, "num"), registrationCell(h.registrations || []));
      if (h.archive !== undefined) tr.append(archiveCell(h.archive));  // only with an archive destination
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  // --- Frames -------------------------------------------------------------------------------------------

  function applyFrame(frame) {
    var h = state.health.get(frame.source);
    if (h && frame.counters) applyCounters(h, frame.counters);
    if (frame.type !== "live.delta") return;
    var rows = frame.counts.filter(counted);
    var win = state.snap.window;
    var charted = rows.filter(function (row) { return L.takesLive(win, row.at); });
    applyCounts(charted);
    applyTotals(charted);
    frame.events.slice().reverse().forEach(function (item) { addFeedRow(item); });
    if (h) applyHealth(h, frame, rows);  // health is about now, whatever range the chart shows
  }

  function apply(frames) {
    if (frames.length) {
      frames.forEach(applyFrame);
      drawHealth();
    }
    if (state.snap.window.live && Date.now() - loop.lastSync > RESYNC_MS) loop.resync();
  }

  // --- The live loop (socket, re-sync, buffered frames: FluxoLive.livePage) ------------------------------

  var loop = L.livePage({
    redrawMs: REDRAW_MS,
    bufferMax: BUFFER_MAX,
    socketUrl: function () { return config.socketPath + "?source=" + encodeURIComponent($("source").value); },
    snapshot: function () {
      alertsPanel.load($("source").value);
      return L.getJson(config.snapshotUrl + "?" + L.scopeParams().toString());
    },
    render: draw,
    failed: function (error) { $("snapshot-error").textContent = "Could not load the overview: " + error.message; },
    apply: apply,
    // Alerts are rare: shown at once.
    immediate: function (frame) { if (frame.type !== "live.alerts") return false; alertsPanel.apply(frame.alerts); return true; },
  });

  var choose = L.watchScope(function (sourceChanged) {
    var shown = L.scopeParams();
    shown.delete("tz");
    history.replaceState(null, "", "?" + shown.toString());
    if (sourceChanged) loop.replace(); else loop.resync();
  });
  setInterval(function () { if (!document.hidden && state.snap) drawHealth(); }, 15000);
})();

/* The lead-activity tail: the newest matching activities over HTTP, then live over a WebSocket.
 * The filters go to the server (both the snapshot and the socket), so rare types are never lost to
 * sampling. Rows are drawn at most every REDRAW_MS, not while the tab is hidden; event text goes in
 * with textContent only.
 */
(function () {
  "use strict";

  var REDRAW_MS = 250;
  var ROWS_MAX = 200;
  var BUFFER_MAX = 2000;
  var L = window.FluxoLive;
  var config = JSON.parse(document.getElementById("tail-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var state = { sources: [], window: null, ids: new Set() };

  /* What the server filters on: the source and these (the range only applies to the snapshot). */
  function filters() {
    var params = new URLSearchParams();
    ["source", "type", "lead", "campaign"].forEach(function (name) {
      var value = $(name).value.trim();
      if (value) params.set(name, value);
    });
    return params;
  }

  /* The filters and the range: the snapshot's query, and the page's own URL. */
  function choices() {
    var params = L.scopeParams(filters());
    params.delete("tz");
    return params;
  }

  function sourceName(id) {
    var found = state.sources.find(function (s) { return s.id === id; });
    return found ? found.name : "#" + id;
  }

  function row(item) {
    var tr = document.createElement("tr");
    tr.dataset.id = item.id;
    var lead = document.createElement("td");
    if (item.lead) {
      var link = L.cell("a", item.lead);
      link.href = config.leadsUrl + item.source + "/" + encodeURIComponent(item.lead) + "/";
      lead.append(link);
    }
    tr.append(L.linkCell(L.shownTime(item.received_at), item.url), L.cell("td", item.occurred_at ? L.shownTime(item.occurred_at) : ""),
      L.cell("td", sourceName(item.source)), L.cell("td", item.label), lead, L.cell("td", item.detail));
    return tr;
  }

  function add(items) {
    var body = $("tail").tBodies[0];
    items.slice().reverse().forEach(function (item) {
      if (state.ids.has(item.id)) return;
      state.ids.add(item.id);
      body.insertBefore(row(item), body.firstChild);
    });
    while (body.rows.length > ROWS_MAX) {
      state.ids.delete(Number(body.lastChild.dataset.id));
      body.removeChild(body.lastChild);
    }
  }

  function render(snap) {
    state.sources = snap.sources;
    state.window = snap.window;
    state.ids = new Set();
    $("tail").tBodies[0].replaceChildren();
    add(snap.events);
    $("snapshot-error").textContent = "";
  }

  function apply(frames) {
    frames.forEach(function (frame) {
      if (frame.type !== "live.tail") return;
      // A range that ends before now takes nothing new; one that holds now, what falls in it.
      var taken = frame.events.filter(function (item) { return L.takesLive(state.window, item.received_at); });
      if (frame.sampled && taken.length) $("sampled").hidden = false;
      add(taken);
    });
  }

  var loop = L.livePage({
    redrawMs: REDRAW_MS,
    bufferMax: BUFFER_MAX,
    socketUrl: function () {
      var params = filters();
      params.set("view", "tail");
      return config.socketPath + "?" + params.toString();
    },
    snapshot: function () {
      var query = choices();
      query.set("tz", L.zone);
      return L.getJson(config.tailUrl + "?" + query.toString());
    },
    render: render,
    failed: function (error) { $("snapshot-error").textContent = "Could not load activities: " + error.message; },
    apply: apply,
  });

  function refilter() {
    history.replaceState(null, "", "?" + choices().toString());
    $("sampled").hidden = true;
    loop.replace();
  }

  $("filters").addEventListener("submit", function (event) { event.preventDefault(); refilter(); });
  // Another source needs another socket; another range, only another snapshot.
  L.watchScope(function (sourceChanged) {
    if (sourceChanged) { refilter(); return; }
    history.replaceState(null, "", "?" + choices().toString());
    loop.resync();
  });
})();

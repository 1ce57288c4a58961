/* The audit page: who changes which assets, a heat map, and the latest changes (login failures stand out). */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  function rows(tableId, items, cellsOf, cell) {
    var body = $(tableId).tBodies[0];
    body.replaceChildren.apply(body, items.map(function (item) {
      var tr = document.createElement("tr");
      cellsOf(item).forEach(function (value, i) { tr.append(cell("td", value, typeof value === "number" ? "num" : "")); });
      return tr;
    }));
  }

  window.FluxoStreamPage({
    render: function (snap, api) {
      Plotly.react($("heatmap"), snap.heatmap.data, snap.heatmap.layout, { displaylogo: false, responsive: true });
      $("changes").textContent = snap.changes.toLocaleString();
      $("login-failures").textContent = snap.login_failures.toLocaleString();
      $("login-failures").className = "login-failures" + (snap.login_failures ? " some" : "");
      rows("people", snap.people, function (p) { return [p.person, p.changes]; }, api.cell);
      rows("by-component", snap.by_component, function (c) { return [c.component, c.action, c.changes]; }, api.cell);
      api.feed(snap.feed, true);
    },
    feedRow: function (item, api) {
      var tr = document.createElement("tr");
      if (item.alert) tr.className = "alert";
      tr.append(api.linkCell(api.shownTime(item.received_at), item.url), api.cell("td", api.sourceName(item.source)),
        api.cell("td", item.label), api.cell("td", item.user), api.cell("td", item.detail));
      return tr;
    },
  });
})();

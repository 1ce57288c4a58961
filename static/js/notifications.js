/* The notifications page: campaign aborts and failures, the daily web-service quota, the rest. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var plotConfig = { displaylogo: false, responsive: true };
  var SHOWN_ELSEWHERE = ["campaign_abort", "campaign_failure", "web_services"];

  function kindOf(item) { return item.key.split("|")[1].split(".").pop(); }

  window.FluxoStreamPage({
    render: function (snap, api) {
      Plotly.react($("gauge"), snap.gauge.data, snap.gauge.layout, plotConfig);
      Plotly.react($("quota-line"), snap.quota_line.data, snap.quota_line.layout, plotConfig);
      $("quota-detail").textContent = snap.quota
        ? api.sourceName(snap.quota.source) + ": " + snap.quota.percent + " % of " + (snap.quota.daily_quota || "?") + " calls"
        : "No quota notification in this range.";
      var body = $("problems").tBodies[0];
      body.replaceChildren.apply(body, snap.problems.map(function (p) {
        var tr = document.createElement("tr");
        tr.append(api.linkCell(api.shownTime(p.occurred_at), p.url), api.cell("td", api.sourceName(p.source)),
          api.cell("td", p.what), api.cell("td", p.campaign), api.cell("td", p.user));
        return tr;
      }));
      api.feed(snap.others, true);
    },
    // Aborts, failures and quota live in their own panels, refreshed from the snapshot.
    inFeed: function (item) { return SHOWN_ELSEWHERE.indexOf(kindOf(item)) < 0; },
    feedRow: function (item, api) {
      var tr = document.createElement("tr");
      tr.append(api.linkCell(api.shownTime(item.received_at), item.url), api.cell("td", api.sourceName(item.source)),
        api.cell("td", item.label), api.cell("td", item.user), api.cell("td", item.detail));
      return tr;
    },
  });
})();

/* The overview's open-alerts panel: a snapshot from /api/v1/alerts, then the live.alerts frames.
 *
 * Compact, so the charts stay in view: the open alerts (firing, then pending), the most severe first,
 * at most SHOWN of them and "and N more" linking to the alerts page; hidden when none is open. The
 * states are named as on every page (pending, firing, resolved). Every text comes from events or rule
 * names that admins typed: it goes in with textContent only.
 */
window.FluxoAlertsPanel = (function () {
  "use strict";

  var SHOWN = 3;
  var ORDER = { firing: 0, pending: 1 };
  var SEVERITY = { critical: 0, warning: 1, info: 2 };
  var L = window.FluxoLive;

  function Panel(root) {
    this.root = root;
    this.url = root.dataset.url;
    this.alerts = new Map();
    this.source = "all";
    this.seq = 0;
  }

  /* Load the snapshot for ``source`` ("all" or an id). */
  Panel.prototype.load = function (source) {
    var self = this, seq = ++self.seq;
    self.source = source;
    return L.getJson(self.url + "?source=" + encodeURIComponent(source)).then(function (snap) {
      if (!snap || seq !== self.seq) return;
      self.alerts = new Map(snap.alerts.map(function (a) { return [a.id, a]; }));
      self.draw();
    }).catch(function () { /* the panel waits for the next snapshot */ });
  };

  /* Apply announced alerts (a live.alerts frame). */
  Panel.prototype.apply = function (alerts) {
    var self = this;
    alerts.forEach(function (a) {
      if (self.source !== "all" && String(a.source_id) !== self.source) return;
      self.alerts.set(a.id, a);
    });
    self.draw();
  };

  function rank(a) { return a.severity in SEVERITY ? SEVERITY[a.severity] : 3; }

  function shown(a) { return a.state === "pending" || a.state === "firing"; }

  function labels(a) {
    return Object.keys(a.labels || {}).map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
  }

  Panel.prototype.draw = function () {
    var rows = Array.from(this.alerts.values()).filter(shown);
    rows.sort(function (a, b) {
      return (rank(a) - rank(b)) || (ORDER[a.state] - ORDER[b.state]) ||
        (L.parseTime(b.fired_at || b.started_at) - L.parseTime(a.fired_at || a.started_at));
    });
    var body = this.root.querySelector("tbody");
    body.replaceChildren.apply(body, rows.slice(0, SHOWN).map(function (a) {
      var tr = document.createElement("tr");
      tr.className = "alert-" + a.state;
      tr.dataset.alert = a.id;
      var link = document.createElement("a");
      link.href = "/alerts/" + encodeURIComponent(a.id) + "/";
      link.textContent = a.rule;
      var rule = document.createElement("td");
      rule.append(link);
      var state = a.state + (a.acknowledged ? " (acknowledged)" : "");
      tr.append(cell("td", a.severity, "severity " + a.severity), rule, cell("td", labels(a)),
        cell("td", a.summary), cell("td", state, "state"), cell("td", L.shownTime(a.fired_at || a.started_at)));
      return tr;
    }));
    var more = this.root.querySelector(".more");
    more.replaceChildren();
    if (rows.length > SHOWN) {
      var link = cell("a", "and " + (rows.length - SHOWN) + " more");
      link.href = "/alerts/";
      more.append(link);
    }
    this.root.hidden = rows.length === 0;
  };

  function cell(tag, value, className) { return L.cell(tag, value, className); }

  return { Panel: Panel };
})();

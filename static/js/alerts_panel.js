/* The overview's firing-alerts panel: a snapshot from /api/v1/alerts, then the live.alerts frames.
 *
 * Shows open alerts (pending, firing), event alerts fired in the last hour and alerts resolved in the
 * last hour, newest first; hidden when there is none. Every text comes from events or rule names
 * that admins typed: it goes in with textContent only.
 */
window.FluxoAlertsPanel = (function () {
  "use strict";

  var SHOWN = 20;
  var RECENT_MS = 60 * 60 * 1000;
  var ORDER = { firing: 0, pending: 1, fired: 2, resolved: 3 };
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

  function shown(a, now) {
    if (a.state === "pending" || a.state === "firing") return true;
    var at = a.state === "resolved" ? a.resolved_at : a.fired_at;
    return (a.state === "resolved" || a.state === "fired") && at && now - L.parseTime(at) < RECENT_MS;
  }

  function labels(a) {
    return Object.keys(a.labels || {}).map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
  }

  Panel.prototype.draw = function () {
    var now = Date.now();
    var rows = Array.from(this.alerts.values()).filter(function (a) { return shown(a, now); });
    rows.sort(function (a, b) {
      return (ORDER[a.state] - ORDER[b.state]) || (L.parseTime(b.started_at) - L.parseTime(a.started_at));
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
    more.textContent = rows.length > SHOWN ? "and " + (rows.length - SHOWN) + " more on the alerts page" : "";
    this.root.hidden = rows.length === 0;
  };

  function cell(tag, value, className) { return L.cell(tag, value, className); }

  return { Panel: Panel };
})();

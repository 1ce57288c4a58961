/* The alerts pages are rendered by the server and work without this script. It only:
 * - shows <time datetime> in the viewer's zone and tells forms that zone (hidden .viewer-zone inputs);
 * - hides the fields that mean nothing for the chosen kind (rules, destinations);
 * - adds condition / matcher rows from the formset's empty row;
 * - draws the rule preview's timeline with the Plotly served from this machine.
 * Nothing here inserts HTML built from data: text goes in with textContent, specs come from json_script.
 */
(function () {
  "use strict";

  var zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
  var readable = new Intl.DateTimeFormat(undefined, { timeZone: zone, dateStyle: "medium", timeStyle: "medium" });

  function localiseTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (node) {
      var iso = node.getAttribute("datetime");
      var parsed = Date.parse(String(iso).replace(/(\.\d{3})\d+/, "$1"));
      if (isNaN(parsed)) return;
      node.textContent = readable.format(new Date(parsed));
      node.title = iso;
    });
    document.querySelectorAll(".viewer-zone-name").forEach(function (node) { node.textContent = zone; });
    document.querySelectorAll("input.viewer-zone").forEach(function (input) { input.value = zone; });
  }

  /* Hide every .field whose data-kinds (on it or on its input) does not list the chosen kind. */
  function followKind(form) {
    var select = form.querySelector("select[name=kind]");
    if (!select) return;
    function apply() {
      form.querySelectorAll("[data-kinds]").forEach(function (node) {
        var row = node.closest(".field") || node;
        var kinds = node.getAttribute("data-kinds").split(" ");
        row.hidden = kinds.indexOf(select.value) === -1;
      });
      form.querySelectorAll(".kinds-note").forEach(function (note) { note.hidden = true; });
    }
    select.addEventListener("change", apply);
    apply();
  }

  /* "Add a row": clone <template id="PREFIX-empty">, numbered by the formset's TOTAL_FORMS. */
  function addRows(button) {
    var prefix = button.getAttribute("data-add-row");
    var template = document.getElementById(prefix + "-empty");
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    var body = document.getElementById(prefix + "-rows");
    if (!template || !total || !body) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      var row = template.content.firstElementChild.cloneNode(true);
      row.querySelectorAll("[name], [id], label[for]").forEach(function (node) {
        ["name", "id", "for"].forEach(function (attr) {
          var value = node.getAttribute(attr);
          if (value) node.setAttribute(attr, value.replace("__prefix__", String(index)));
        });
      });
      body.appendChild(row);
      total.value = String(index + 1);
      var first = row.querySelector("input, select");
      if (first) first.focus();
    });
  }

  function drawPreview() {
    var target = document.getElementById("preview-figure");
    var spec = document.getElementById("preview-figure-spec");
    if (!target || !spec || !window.Plotly) return;
    var figure = JSON.parse(spec.textContent);
    window.Plotly.newPlot(target, figure.data, figure.layout, { displaylogo: false, responsive: true });
  }

  localiseTimes();
  document.querySelectorAll("form").forEach(followKind);
  document.querySelectorAll("button[data-add-row]").forEach(addRows);
  drawPreview();
  var preview = document.getElementById("preview");
  if (preview) preview.scrollIntoView();
})();

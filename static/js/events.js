/* The event search and the event page are rendered by the server; here their times are shown in the
 * viewer's zone, and the search form says which zone a custom range is typed in. */
(function () {
  "use strict";
  var L = window.FluxoLive;
  var $ = function (id) { return document.getElementById(id); };
  if ($("zone")) $("zone").textContent = L.zone;
  L.localiseTimes();
  if (!$("search")) return;
  $("tz").value = L.zone;
  $("range").addEventListener("change", function () { $("custom-range").hidden = $("range").value !== "custom"; });
})();

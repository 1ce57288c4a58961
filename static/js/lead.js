/* A lead's timeline is rendered by the server; only its times are shown in the viewer's zone. */
(function () {
  "use strict";
  document.getElementById("zone").textContent = window.FluxoLive.zone;
  window.FluxoLive.localiseTimes();
})();

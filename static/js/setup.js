/* The setup page's Copy buttons: the URL next to each goes to the clipboard (no inline script: CSP). */
(function () {
  "use strict";
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var done = function (text) { button.textContent = text; setTimeout(function () { button.textContent = "Copy"; }, 2000); };
      if (!navigator.clipboard) { done("Select and copy"); return; }
      navigator.clipboard.writeText(button.dataset.copy).then(function () { done("Copied"); }, function () { done("Select and copy"); });
    });
  });
})();

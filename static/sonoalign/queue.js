// Keep the active tab in step with the list htmx just swapped in (the tabs sit outside the partial).
(function () {
  "use strict";
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "queue-list") return;
    var status = new URL(event.detail.pathInfo.finalRequestPath, location.href).searchParams.get("status") || "";
    document.querySelectorAll(".tabs a").forEach(function (tab) {
      var tabStatus = new URL(tab.href).searchParams.get("status") || "";
      tab.classList.toggle("active", tabStatus === status);
    });
  });
})();

// Sizes and colours the server computed, applied from here: the Content Security Policy
// (style-src 'self') refuses style attributes in markup, not styles our own script sets.
//   data-style-width="42"      → width: 42%
//   data-style-height="42"     → height: 42%
//   data-style-var="--c" data-style-value="#22d3ee" → the custom property --c
(function () {
  "use strict";

  function apply(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var targets = Array.prototype.slice.call(scope.querySelectorAll("[data-style-width], [data-style-height], [data-style-var]"));
    if (scope !== document && scope.matches && scope.matches("[data-style-width], [data-style-height], [data-style-var]")) targets.push(scope);
    targets.forEach(function (el) {
      if (el.dataset.styleWidth !== undefined) el.style.width = el.dataset.styleWidth + "%";
      if (el.dataset.styleHeight !== undefined) el.style.height = el.dataset.styleHeight + "%";
      if (el.dataset.styleVar && el.dataset.styleVar.indexOf("--") === 0) el.style.setProperty(el.dataset.styleVar, el.dataset.styleValue || "");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { apply(document); });
  else apply(document);
  document.addEventListener("htmx:afterSettle", function (event) { apply(event.detail && event.detail.elt); });
})();

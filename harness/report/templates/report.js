// Expand/collapse the per-model panels; open a panel when the address points into it.
(function () {
  "use strict";
  var panels = document.querySelectorAll("details.model");
  document.querySelectorAll("button[data-toggle]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var open = btn.getAttribute("data-toggle") === "open";
      panels.forEach(function (d) { d.open = open; });
    });
  });
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  window.addEventListener("hashchange", reveal);
  reveal();
})();

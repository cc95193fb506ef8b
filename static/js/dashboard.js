// Dashboard: show only the chosen definition's core functions (the server ignores the
// others anyway; without this script every definition's list is shown).
(function () {
  "use strict";
  function sync() {
    var select = document.getElementById("definition");
    if (!select) return;
    document.querySelectorAll("fieldset.functions").forEach(function (fieldset) {
      var chosen = fieldset.getAttribute("data-definition") === select.value;
      fieldset.hidden = !chosen;
      fieldset.disabled = !chosen;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("definition");
    if (select) select.addEventListener("change", sync);
    sync();
  });
})();

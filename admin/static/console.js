// Progressive enhancement only: every page works without this file.
// - password strength meters (asks the server's scorer; the policy is checked on submit anyway)
// - copy buttons for secrets shown once
"use strict";
(function () {
  var labels = ["too guessable", "weak", "fair", "strong", "very strong"];
  var tokenMeta = document.querySelector('meta[name="csrf-token"]');
  var token = tokenMeta ? tokenMeta.getAttribute("content") : null;

  function score(input) {
    var meter = document.getElementById(input.dataset.strength);
    var text = document.getElementById(input.dataset.strength + "-text");
    if (!meter || !token) { return; }
    if (!input.value) { meter.value = 0; if (text) { text.textContent = ""; } return; }
    fetch("/api/v1/passwords/score", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
      body: JSON.stringify({password: input.value})
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
      if (!data) { return; }
      meter.value = data.score;
      if (text) { text.textContent = labels[data.score] + (data.problems.length ? ": " + data.problems.join("; ") : ""); }
    }).catch(function () {});
  }

  document.querySelectorAll("input[data-strength]").forEach(function (input) {
    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { score(input); }, 250);
    });
  });

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      field.select();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else { document.execCommand("copy"); done(); }
    });
  });
})();

// The console's only script: the Copy button of the key shown once. The key
// is copied to the clipboard and never written to any browser storage.
"use strict";
document.addEventListener("click", function (ev) {
  var button = ev.target.closest("button[data-copy]");
  if (!button) { return; }
  var field = document.getElementById(button.getAttribute("data-copy"));
  var status = button.parentNode.querySelector(".copied");
  var done = function (ok) {
    if (status) { status.textContent = ok ? "Copied" : "Select the key and copy it with Ctrl+C"; }
  };
  field.focus();
  field.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () {
      done(document.execCommand("copy"));
    });
  } else {
    done(document.execCommand("copy"));
  }
});

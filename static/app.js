// The little the pages need beyond htmx: Ctrl-Enter sends, Esc stops, copy buttons, the
// message box cleared once a message is sent, and tabs that follow the address (/#infill).
// No framework.
"use strict";

// A tab named in the address (/#infill; the server reads ?tab=infill) is selected; choosing a
// tab puts it in the address, so it can be linked and survives a reload.
function selectTabFromAddress() {
  var tab = document.getElementById("tab-" + decodeURIComponent(location.hash.slice(1)));
  if (tab && tab.name === "tab" && !tab.disabled) tab.checked = true;
}
selectTabFromAddress();
window.addEventListener("hashchange", selectTabFromAddress);
document.addEventListener("change", function (event) {
  if (event.target.name === "tab" && event.target.checked) history.replaceState(null, "", "#" + event.target.value);
});

document.addEventListener("keydown", function (event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.closest("form.send")) {
    var form = event.target.closest("form.send");
    var send = form.querySelector("button[type=submit]");
    event.preventDefault();
    if (send && !send.disabled) form.requestSubmit(send);
  } else if (event.key === "Escape") {
    var visible = Array.prototype.filter.call(document.querySelectorAll(".stop"), function (b) {
      return b.offsetParent !== null;
    });
    if (visible.length) visible[visible.length - 1].click();
  }
});

document.addEventListener("htmx:afterRequest", function (event) {
  var form = event.detail.elt;
  if (event.detail.successful && form.matches && form.matches("form.send")) {
    form.querySelectorAll("[data-clear-after-send]").forEach(function (box) { box.value = ""; });
  }
});

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // plain http on another host: the old way, through a selected off-screen textarea
  var box = document.createElement("textarea");
  box.value = text;
  box.className = "offscreen";
  document.body.appendChild(box);
  box.select();
  document.execCommand("copy");
  box.remove();
  return Promise.resolve();
}

document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) return;
  var code = button.closest(".code").querySelector("pre code");
  copyText(code.textContent).then(function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  });
});

// KeyVault's only script: copy buttons (a new key's value, the API reference's code blocks),
// confirmation prompts, the create-key form's helpers and the history entry of a page that
// showed a key's value.
// Served as a file because the Content-Security-Policy forbids inline scripts.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var id = button.getAttribute("data-copy-target");
    var input = document.getElementById(id);
    var done = function () {
      var note = document.querySelector('[data-copied-for="' + id + '"]');
      if (note) note.hidden = false;
      button.textContent = "Copied";
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(done, function () {
        input.select();
        document.execCommand("copy");
        done();
      });
    } else {
      input.select();
      document.execCommand("copy");
      done();
    }
  });

  // The API reference's code blocks each get a Copy button. Added here, not in the page, so a
  // browser without script shows no button that does nothing.
  function addCodeCopyButtons() {
    var blocks = document.querySelectorAll(".docs-main pre");
    if (!blocks.length) return;
    var status = document.createElement("p");  // what a screen reader hears after a copy
    status.className = "sr-only";
    status.setAttribute("role", "status");
    status.id = "copy-status";
    document.querySelector(".docs-main").appendChild(status);
    blocks.forEach(function (pre) {
      var block = document.createElement("div");
      block.className = "code-block";
      pre.parentNode.insertBefore(block, pre);
      block.appendChild(pre);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy";
      block.appendChild(button);
    });
  }

  function copyCode(button) {
    var pre = button.parentNode.querySelector("pre");
    var text = pre.textContent;
    var done = function () {
      button.textContent = "Copied";
      document.getElementById("copy-status").textContent = "Copied to the clipboard.";
      window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    var bySelection = function () {  // plain http to another host has no navigator.clipboard
      var range = document.createRange();
      range.selectNodeContents(pre);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand("copy")) done();
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, bySelection);
    } else {
      bySelection();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest(".copy-code");
    if (button) copyCode(button);
  });

  document.addEventListener("submit", function (event) {
    var button = event.submitter || event.target.querySelector("[data-confirm]");
    var message = button && button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
    // A form that acts once (create, roll) is sent once: a double click sends one request,
    // whose answer shows the value. (The server refuses a repeat anyway.)
    var form = event.target;
    if (event.defaultPrevented || !form.hasAttribute("data-sends-once")) return;
    if (form.getAttribute("data-sent")) event.preventDefault();
    else form.setAttribute("data-sent", "1");
  });

  window.addEventListener("pageshow", function () {  // a page restored by Back can send again
    document.querySelectorAll("form[data-sent]").forEach(function (form) {
      form.removeAttribute("data-sent");
    });
  });

  function syncCreateForm() {
    // The custom date of the create and edit forms shows only when "Custom date" is chosen.
    document.querySelectorAll("form").forEach(function (each) {
      var expiry = each.querySelector('select[name="expiry"]');
      var date = each.querySelector('input[name="expires_on"]');
      if (expiry && date) date.closest(".field").hidden = expiry.value !== "custom";
    });
    var form = document.getElementById("create-key-form");
    if (!form) return;
    var preset = form.querySelector('input[name="preset"]:checked');
    var custom = preset && preset.value === "custom";
    var scopes = form.querySelector(".scope-list");
    if (scopes) scopes.hidden = !custom;
    var warning = form.querySelector(".full-access-warning");
    var fullTicked = form.querySelector('input[name="scopes"][value="*"]:checked');
    if (warning) warning.hidden = !((preset && preset.value === "full") || (custom && fullTicked));
  }

  function syncServiceScopes() {
    // A key restricted to chosen services is offered the scopes of those services only (and
    // the instance-wide ones): another service's scope would never reach it. A scope already
    // ticked stays in view, so an edit never drops one unseen.
    document.querySelectorAll("form").forEach(function (each) {
      var only = each.querySelector('input[name="where"][value="only"]');
      if (!only) return;
      var chosen = {};
      each.querySelectorAll('input[name="services"]:checked').forEach(function (box) {
        chosen[box.value] = true;
      });
      each.querySelectorAll("li[data-service]").forEach(function (item) {
        var ticked = item.querySelector("input:checked");
        item.hidden = only.checked && !chosen[item.getAttribute("data-service")] && !ticked;
      });
    });
  }

  document.addEventListener("change", syncCreateForm);
  document.addEventListener("change", syncServiceScopes);
  document.addEventListener("DOMContentLoaded", function () {
    syncCreateForm();
    syncServiceScopes();
    addCodeCopyButtons();
    var secret = document.getElementById("new-key-value");
    if (secret) secret.addEventListener("focus", function () { secret.select(); });
    // The page showing a new value answered a POST: make its history entry a plain GET that
    // says the value was shown, so a reload or Back neither posts again nor hits the
    // browser's "Confirm Form Resubmission" page. (Without script, the form's one-time token
    // refuses the repeat instead.)
    var shown = document.querySelector("[data-replace-url]");
    if (shown && window.history && window.history.replaceState) {
      window.history.replaceState(null, "", shown.getAttribute("data-replace-url"));
    }
  });
})();

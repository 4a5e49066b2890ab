// Passkeys (WebAuthn): "Sign in with a passkey", the second step of a login, and adding one.
// Every control is a `[data-passkey]` element, hidden in the HTML and shown here only when the
// browser can use passkeys, so without JavaScript the page is the password form alone. It reads
// its parameters from data- attributes (the CSP forbids inline scripts):
//   data-passkey        "login", "second-factor" (navigator.credentials.get) or "register" (create)
//   data-options-url    POST: the WebAuthn options, with a fresh single-use challenge
//   data-verify-url     POST: the browser's answer, as JSON; { "redirect": url } when accepted
//   data-csrf-token     sent as the X-CSRFToken header (Flask-WTF)
//   data-next           (optional) where to go after a login
//   data-name-input     (register) the id of the input holding the passkey's name
(function () {
  "use strict";

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer), text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var text = atob(base64), bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes.buffer;
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return { type: item.type, id: fromBase64url(item.id), transports: item.transports };
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = fromBase64url(json.challenge);
    options.user = Object.assign({}, json.user, { id: fromBase64url(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = fromBase64url(json.challenge);
    if (json.allowCredentials) options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response, out = {
      id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      out.response.attestationObject = toBase64url(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toBase64url(response.authenticatorData);
      out.response.signature = toBase64url(response.signature);
      if (response.userHandle) out.response.userHandle = toBase64url(response.userHandle);
    }
    return out;
  }

  function post(url, token, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token,
                 "Accept": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () {
        return { detail: response.status === 400
          ? "The page's security token was missing or has expired: reload the page and try again."
          : "Something went wrong (" + response.status + "). Reload the page and try again." };
      }).then(function (data) {
        if (!response.ok) throw new Error(data.detail || "Something went wrong.");
        return data;
      });
    });
  }

  function browserRefusal(error, address) {
    if (error.name === "InvalidStateError")
      return "This device already holds a passkey for your account: there is nothing to add.";
    if (error.name === "NotAllowedError")
      return "No passkey was used: the request was cancelled or timed out. Try again.";
    if (error.name === "SecurityError")
      return "This browser refused passkeys at this address: open KeyVault at " +
        (address || "its domain name (not an IP address), such as http://localhost") + ".";
    return error.message || "The passkey did not answer.";
  }

  function start(box) {
    var mode = box.getAttribute("data-passkey");
    var token = box.getAttribute("data-csrf-token");
    var status = box.querySelector("[data-passkey-status]");
    var button = box.querySelector("button");
    var say = function (message) {
      status.textContent = message;
      status.hidden = !message;
    };
    var body = {};
    if (mode === "register") {
      var input = document.getElementById(box.getAttribute("data-name-input"));
      body.name = input ? input.value.trim() : "";
      if (!body.name) { say("Give the passkey a name, such as “Work laptop”."); return; }
    } else if (box.getAttribute("data-next")) {
      body.next = box.getAttribute("data-next");
    }
    say("");
    button.disabled = true;
    var browserStep = false;
    post(box.getAttribute("data-options-url"), token).then(function (json) {
      browserStep = true;
      return mode === "register"
        ? navigator.credentials.create({ publicKey: creationOptions(json) })
        : navigator.credentials.get({ publicKey: requestOptions(json) });
    }).then(function (credential) {
      browserStep = false;
      body.credential = credentialJSON(credential);
      return post(box.getAttribute("data-verify-url"), token, body);
    }).then(function (data) {
      window.location.assign(data.redirect);
    }).catch(function (error) {
      say(browserStep ? browserRefusal(error, box.getAttribute("data-address")) : error.message);
      button.disabled = false;
    });
  }

  function ready() {
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    document.querySelectorAll("[data-passkey]").forEach(function (box) {
      box.hidden = false;
      box.querySelector("button").addEventListener("click", function () { start(box); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();

// Invitations (docs/protocol.md, "Invitations"): the hosting window's QR code opens
// http://HOST:PORT/#fp=<64 hex>, the chat's certificate fingerprint in the fragment (never sent
// to the server). A page cannot read the certificate of its own connection, so it cannot check
// the fingerprint itself; what it can do honestly is show it, with the same comparison code as
// the hosting window, and say whether this connection is encrypted at all:
//  - over http://: not encrypted; here is the https:// link, and the fingerprint the browser's
//    certificate warning must show before you accept it;
//  - over https://: the fingerprint the certificate should have, to compare with the browser's
//    certificate details and the code with the host's screen.
// The fingerprint is kept in this browser (for this address) so the drawer can show it later.

import { recall, remember, ui } from "./state.js";

const FP = /^[0-9a-f]{64}$/;

// "0081 9673 2716 6445": the first 64 bits as a decimal number, mod 10^16 (as the desktop app).
export function comparisonCode(hex) {
  const n = BigInt("0x" + hex.slice(0, 16)) % 10n ** 16n;
  return n.toString().padStart(16, "0").replace(/(\d{4})(?=\d)/g, "$1 ");
}

export const colons = (hex) => hex.toUpperCase().match(/../g).join(":");

// The invitation's fingerprint: from this address's fragment (and kept), else the kept one.
// "damaged" when the fragment has an fp that is not a fingerprint.
export function invitation() {
  const given = new URLSearchParams(location.hash.slice(1)).get("fp");
  if (given !== null) {
    const hex = given.replace(/[:\s]/g, "").toLowerCase();
    if (!FP.test(hex)) return "damaged";
    remember("invite-fp", hex);
    return hex;
  }
  const kept = recall("invite-fp");
  return kept && FP.test(kept) ? kept : null;
}

const secure = () => location.protocol === "https:";

function line(cls, ...parts) {
  const p = document.createElement("p");
  p.className = cls;
  p.append(...parts);
  return p;
}

function strong(text) {
  const b = document.createElement("strong");
  b.textContent = text;
  return b;
}

// The box on the name form, and the note in the drawer.
export function showInvitation() {
  const fp = invitation();
  const box = ui.invite;
  box.replaceChildren();
  box.hidden = fp === null;
  if (fp === "damaged") {
    box.append(line("invite-warn", "The fingerprint in this invitation is damaged. Ask the " +
      "host for the invitation again, or compare the code on the host’s screen by voice."));
    ui.securityNote.textContent = secure() ? "Encrypted connection (https)." :
      "This connection is not encrypted.";
    return;
  }
  if (fp === null) {
    ui.securityNote.textContent = secure() ? "Encrypted connection (https)." :
      "This connection is not encrypted.";
    return;
  }
  const code = comparisonCode(fp);
  if (secure()) {
    box.append(
      line("invite-lead", "You were invited to the chat whose comparison code is ",
        strong(code), ". Check that the host’s screen shows the same code."),
      // The fingerprint is a block of its own: the sentence ends before it, never after.
      line("invite-fp", "Its certificate fingerprint (SHA-256):", fpText(fp)),
      line("invite-fp", "If your browser warned about the certificate, it must have shown " +
        "this one. This page cannot read the certificate itself."),
    );
    ui.securityNote.textContent = `Encrypted connection (https). Invitation code ${code}.`;
  } else {
    const link = document.createElement("a");
    link.href = `https://${location.host}/#fp=${fp}`;
    link.textContent = "Open the secure page";
    link.className = "invite-link";
    box.append(
      line("invite-warn", "This connection is not encrypted: others on this network could " +
        "read the chat, or pretend to be it."),
      line("invite-lead", link, " (https). Your browser will warn about the certificate: " +
        "continue only if its SHA-256 fingerprint is:", fpText(fp)),
      line("invite-fp", "Comparison code ", strong(code), ": the host’s screen shows the same."),
    );
    ui.securityNote.textContent = `Not encrypted (http). Invitation code ${code}.`;
  }
}

function fpText(hex) {
  const code = document.createElement("code");
  code.className = "fingerprint";
  code.textContent = colons(hex);
  return code;
}

// Passwords travel only over an encrypted connection: say where that is, and which fingerprint
// the browser's certificate warning must show (the server puts it in its message).
export function secureAdvice(text) {
  const fp = /fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})/i.exec(text);
  const check = fp
    ? ` If the browser warns about the certificate, accept it only if its SHA-256 ` +
      `fingerprint is ${fp[1]}.`
    : "";
  return "Passwords are sent only over a secure connection: open this chat at " +
    `https://${location.host}/ instead.${check}`;
}

// The frame both pages (join.js, console.js) share: switching screens, the message screen,
// the connection banner, the signalling connection with the call view wired to the page's
// standard elements, and the `window.vestibule` hooks for tests and support.
//
// Each page keeps its own state object; the functions here read and write only the fields
// both pages have: screen, stage, participantId, callStatus, waiting, roster, problem and
// reconnecting.

import { CallView } from "./callview.js";
import { history } from "./mesh.js";
import { placeDevices } from "./local.js";
import { Signal } from "./signal.js";
import { $, announce, el, showScreen } from "./ui.js";

/**
 * The screen functions of a page, bound to its `state`:
 * - go(screen, options): show a [data-screen] (options as ui.showScreen) with the device
 *   panel in its slot, and return it;
 * - message(title, paragraphs, action): the message screen; paragraphs are strings or
 *   elements, action an optional {label, onClick} for its button;
 * - setBanner(text): show the connection banner (null hides it and announces the recovery).
 */
export function screens(state) {
  function go(screen, options) {
    state.screen = screen;
    const shown = showScreen(screen, options);
    placeDevices(shown);
    return shown;
  }

  function message(title, paragraphs, action = null) {
    $("#message-title").textContent = title;
    $("#message-body").replaceChildren(...paragraphs.map((p) => (typeof p === "string" ? el("p", {}, p) : p)));
    const button = $("#message-action");
    button.hidden = !action;
    if (action) {
      button.textContent = action.label;
      button.onclick = action.onClick;
    }
    go("message");
  }

  function setBanner(text) {
    const banner = $("#connection");
    const was = !banner.hidden;
    banner.hidden = !text;
    banner.textContent = text || "";
    state.reconnecting = Boolean(text);
    if (was && !text) announce("Connection restored.");
  }

  return { go, message, setBanner };
}

// The call's own messages (offer, answer, candidate: PROTOCOL.md §9) go straight to the call.
const CALL_MESSAGES = new Set(["offer", "answer", "candidate"]);

/**
 * The page's signalling connection and call view, wired the same way on both pages: the call
 * uses #grid, the call's and the preview's mute and camera buttons and #sound-button, and
 * follows device switches. `on` takes the Signal's events (signal.js): welcome(welcome),
 * message(message) for every server message but the call's own and errors, error(message),
 * state(detail), refused(code, details), closed(reason). `features` go in the hello (§5.1).
 * Returns {signal, call}; nothing is sent until the page calls signal.start().
 */
export function connectCall({ link, local, on, features = [] }) {
  const signal = new Signal({ room: link.room, token: link.token, storageKey: link.storageKey, features });
  const call = new CallView({
    signal,
    local,
    grid: $("#grid"),
    controls: [
      { mute: $("#mute-button"), camera: $("#camera-button") },
      { mute: $("#preview-mute"), camera: $("#preview-camera") },
    ],
    onSoundBlocked: () => ($("#sound-button").hidden = false),
  });
  local.onSwitch = (kind, track) => call.mesh && call.mesh.replaceTrack(kind, track);
  $("#sound-button").addEventListener("click", () => {
    call.enableSound();
    $("#sound-button").hidden = true;
  });
  signal.addEventListener("welcome", (e) => on.welcome(e.detail));
  signal.addEventListener("message", (e) => {
    const m = e.detail;
    if (CALL_MESSAGES.has(m.type)) call.handle(m);
    else if (m.type === "error") on.error(m);
    else on.message(m);
  });
  signal.addEventListener("state", (e) => on.state(e.detail));
  signal.addEventListener("refused", (e) => on.refused(e.detail.code, e.detail.details || {}));
  signal.addEventListener("closed", (e) => on.closed(e.detail.reason));
  return { signal, call };
}

/**
 * For tests and support: `window.vestibule`, what the page is showing and how its media
 * flows. Holds no token. `parts()` returns the page's current {signal, call} (either may be
 * null); `extra()` adds the page's own fields to state().
 */
export function exposeForTests(state, parts, extra = () => ({})) {
  window.vestibule = {
    state: () => ({
      screen: state.screen,
      stage: state.stage,
      participantId: state.participantId,
      callStatus: state.callStatus,
      waiting: state.waiting,
      roster: state.roster,
      ...extra(),
      problem: state.problem,
      reconnecting: state.reconnecting,
      connected: Boolean(parts().signal && parts().signal.connected),
    }),
    stats: () => (parts().call ? parts().call.stats() : Promise.resolve([])),
    videos: () => (parts().call ? parts().call.videos() : []),
    dropConnection: () => parts().signal && parts().signal.drop(),
    log: () => history.slice(),
  };
}

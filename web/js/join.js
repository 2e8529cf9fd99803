// The patient's page (/join/<room>#<token>): name entry for general links, the device
// check, the waiting room or "Ask to join", the call, and clear pages when the link cannot
// be used. Speaks signalling/PROTOCOL.md over one WebSocket.

import { readLink } from "./link.js";
import { Local } from "./local.js";
import { connectCall, exposeForTests, screens } from "./page.js";
import { $, announce, el, localTime, relative, toast } from "./ui.js";

const link = readLink("join");
const local = new Local();
const state = {
  screen: "checking",
  welcome: null,
  participantId: null,
  role: null,
  name: sessionStorage.getItem(`${link.storageKey}:name`),
  stage: null,
  callStatus: null,
  waiting: null,
  roster: [],
  ended: null, // why the last call ended (ended.reason), until the next one
  appointmentAt: null, // when this link's appointment starts (welcome.starts_at)
  deniedMessage: null,
  notice: null, // the clinician's message to the waiting room (notice.text)
  problem: null,
  reconnecting: false,
};
let signal = null;
let call = null;
let retryTimer = null;
const page = screens(state);
const { go, setBanner } = page;

// -- the pages for links that cannot be used (and other dead ends) -----------------------

/** The message screen (page.js), with the header's call status cleared: no call is on. */
function message(title, paragraphs, action = null) {
  $("#call-status").textContent = "";
  page.message(title, paragraphs, action);
}

const UNUSABLE = {
  missing: () => [
    "This link is incomplete",
    [
      "The part of the link that lets you in is missing.",
      "Open the link exactly as you received it (for example by tapping it in your email or text message) instead of copying part of it.",
    ],
  ],
  invalid_token: () => [
    "This link doesn't work",
    [
      "It may have been cut short or changed when it was copied.",
      "Open it again from the message you received. If that doesn't help, ask the clinic for a new link.",
    ],
  ],
  token_expired: (d) => [
    "This link has expired",
    [
      d.expired_at ? `It stopped working on ${localTime(d.expired_at)}.` : "It is no longer valid.",
      "Please ask the clinic to send you a new link.",
    ],
  ],
  link_revoked: () => [
    "This link has been cancelled",
    [
      "The clinic has withdrawn or replaced it, for example because the appointment changed.",
      "Use the most recent link you were sent, or contact the clinic.",
    ],
  ],
  room_closed: (d) => [
    "This visit is over",
    [
      d.closed_at ? `The time to join ended at ${localTime(d.closed_at)}.` : "The time to join has passed.",
      "If you still need to speak to your clinician, please contact the clinic.",
    ],
  ],
  unsupported: () => [
    "This browser can't make video calls",
    ["Please open the link in an up-to-date version of Chrome, Edge, Firefox or Safari."],
  ],
};
UNUSABLE.wrong_room = UNUSABLE.invalid_token;
UNUSABLE.invalid_resume = UNUSABLE.invalid_token;

function unusable(code, details = {}) {
  state.problem = code;
  clearTimeout(retryTimer);
  if (call) call.exit();
  local.stop();
  if (code === "room_not_open" || code === "token_not_yet_valid") return tooEarly(code, details);
  const [title, paragraphs] = (UNUSABLE[code] || UNUSABLE.invalid_token)(details);
  message(title, paragraphs);
}

// Bounded: a client clock far off the server's could otherwise retry in a loop.
let earlyRetries = 0;
const MAX_EARLY_RETRIES = 20;
const MIN_EARLY_DELAY_MS = 10000;

function tooEarly(code, details) {
  const opens = code === "room_not_open" ? details.opens_at : details.not_before;
  const paragraphs = [];
  if (typeof opens === "number") {
    paragraphs.push(
      el("p", {}, "Your video visit opens at ", el("strong", { id: "opens-at" }, localTime(opens)), ` (${relative(opens)}).`),
      "Keep this page open: it will let you in by itself at that time. You can also come back later with the same link.",
    );
  } else {
    paragraphs.push("Your video visit is not open yet. Please come back closer to your appointment time.");
  }
  message(code === "room_not_open" ? "It's a little early" : "This link isn't active yet", paragraphs, {
    label: "Try again now",
    onClick: () => connect(),
  });
  if (typeof opens === "number" && earlyRetries < MAX_EARLY_RETRIES) {
    const wait = opens * 1000 - Date.now() + 2000;
    if (wait < 86400000) {
      earlyRetries += 1;
      retryTimer = setTimeout(() => connect(), Math.max(earlyRetries > 1 ? MIN_EARLY_DELAY_MS : 0, wait));
    }
  }
}

// -- the waiting room -------------------------------------------------------------------

// What the waiting room says, by `waiting.reason` (PROTOCOL.md §6.3) when the patient is in
// it, and after a call ended by why it ended (`ended.reason`).
const WAITING = {
  host_not_started: () => [
    "Your clinician will be with you soon",
    "The call hasn't started yet, so you are in the waiting room. Your clinician can see that you have arrived and will bring you in when they start.",
  ],
  host_away: () => [
    "Your clinician has stepped away",
    "They are not in the call at the moment. Stay on this page: you will be brought in as soon as they are back.",
  ],
  host_busy: () => [
    "Your clinician is with another patient",
    `They will see you when your appointment starts${appointmentTime()}. Stay on this page: you will be let in then.`,
  ],
  at_capacity: () => ["Waiting to be let in", "You have asked to join. The host will let you in or reply shortly."],
  not_booked: () => ["Waiting to be let in", "You have asked to join. The host will let you in or reply shortly."],
  host_ready: () => ["Your clinician is ready", "Check that your camera and microphone work, then join the call."],
};
const ENDED = {
  host_ended: [
    "The call has ended",
    "Your clinician has ended the call. You can close this page, or stay here if they asked you to wait: you will be brought back in when a new call starts.",
  ],
  host_absent: [
    "The call has ended",
    "Your clinician had to leave the call. You are back in the waiting room, and will be brought in when they start again.",
  ],
  window_closed: [
    "Your appointment time is over",
    "The call has ended because the time for this appointment has passed. If you still need to speak to your clinician, please contact the clinic.",
  ],
};
const ASKING = new Set(["at_capacity", "not_booked"]);

function appointmentTime() {
  return state.appointmentAt ? ` (${localTime(state.appointmentAt, { withDate: false })})` : "";
}

function lobby() {
  const w = state.waiting;
  let title;
  let text;
  let position = null;
  let ask = false;
  let cancel = false;
  const join = Boolean(w && w.can_join);
  if (join) {
    [title, text] = WAITING.host_ready();
    position = w.position;
  } else if (w && w.position && state.ended && state.ended !== "host_ended" && w.reason === "host_not_started") {
    [title, text] = ENDED[state.ended] || ENDED.host_ended;
    position = w.position;
  } else if (w && w.position && WAITING[w.reason]) {
    [title, text] = WAITING[w.reason]();
    position = w.position;
    cancel = ASKING.has(w.reason);
  } else if (w && w.can_ask) {
    title = w.reason === "not_booked" ? "This call is for a booked appointment" : "This call is full";
    text =
      w.reason === "not_booked"
        ? "Your link is not for this appointment. You can ask the host to let you in."
        : "Everyone who was booked is already in the call. You can ask the host to let you in.";
    ask = true;
  } else if (state.ended) {
    [title, text] = ENDED[state.ended] || ENDED.host_ended;
  } else if (w && w.reason === "host_busy") {
    [title, text] = WAITING.host_busy();
  } else {
    title = "Please wait for the host";
    text = "The call isn't running at the moment. Stay on this page and you will join as soon as the host starts it.";
  }
  $("#lobby-title").textContent = title;
  $("#lobby-text").textContent = text;
  const where = $("#lobby-position");
  where.hidden = position === null || join;
  where.textContent =
    position === 1
      ? "You're next in the queue."
      : position
        ? `You are number ${position} in the queue (${position - 1} ahead of you).`
        : "";
  where.dataset.position = position === null ? "" : String(position);
  const estimate = $("#lobby-estimate");
  const expected = w && !join ? w.expected_at : null;
  estimate.hidden = typeof expected !== "number";
  estimate.textContent = typeof expected === "number" ? expectation(expected) : "";
  renderNotice();
  $("#join-now-button").hidden = !join;
  $("#ask-button").hidden = !ask;
  $("#cancel-button").hidden = !cancel;
  $("#call-status").textContent = "Waiting room";
  document.body.dataset.reason = join ? "host_ready" : (w && w.reason) || "";
  if (state.screen !== "lobby") go("lobby");
  else announce(`${title}. ${where.hidden ? "" : where.textContent}`);
}

/** When the appointment is expected to start, and how late the clinician is running. */
function expectation(expected) {
  const minutes = Math.max(0, Math.round((expected * 1000 - Date.now()) / 60000));
  const late = state.appointmentAt ? Math.round((expected - state.appointmentAt) / 60) : 0;
  const wait = minutes <= 1 ? "You should be seen in the next minute or so." : `Expected wait: about ${minutes} minutes (around ${localTime(expected, { withDate: false })}).`;
  return late >= 2 ? `Your clinician is running about ${late} minutes late. ${wait}` : wait;
}

function renderNotice() {
  const box = $("#host-notice");
  box.hidden = !state.notice;
  $("#host-notice-text").textContent = state.notice || "";
}

// -- the call ---------------------------------------------------------------------------

/** What the patient is told about the clinician during the call, from the roster. */
function callNotice() {
  const box = $("#call-notice");
  const hosts = state.roster.filter((p) => p.role === "host");
  let notice = "";
  if (state.stage === "in_call" && state.roster.length) {
    if (!hosts.length) notice = "Your clinician has left the call. Please wait: they may be back in a moment.";
    else if (!hosts.some((p) => p.connected)) notice = "Your clinician's connection dropped. Reconnecting…";
  }
  if (box.textContent !== notice) box.textContent = notice;
  box.hidden = !notice;
  document.body.dataset.clinician = !notice ? "present" : hosts.length ? "reconnecting" : "left";
}

function enterCall(resumed) {
  $("#call-status").textContent = "In the call";
  if (state.screen !== "call") go("call");
  call.enter({
    selfId: state.participantId,
    selfName: state.name,
    iceServers: state.welcome.ice_servers,
    resumed,
  });
  if (state.roster.length) call.roster(state.roster);
  callNotice();
}

function leaveCall() {
  if (call) call.exit();
  $("#sound-button").hidden = true;
  $("#call-notice").hidden = true;
}

// -- the connection ---------------------------------------------------------------------

function connect() {
  clearTimeout(retryTimer);
  state.problem = null;
  state.deniedMessage = null;
  go("checking");
  signal.start(state.name || undefined);
}

function onWelcome(w) {
  const again = state.welcome !== null;
  state.welcome = w;
  state.participantId = w.participant_id;
  state.role = w.role;
  state.name = w.name || state.name;
  state.stage = w.stage;
  state.callStatus = w.call_status;
  state.appointmentAt = w.starts_at ?? null;
  earlyRetries = 0;
  if (w.role === "host") {
    // A clinician's link opened on the patient page: the console is the clinician's page.
    signal.leave();
    location.replace(`/console/${encodeURIComponent(link.room)}#${link.token}`);
    return;
  }
  local.start().then(() => call && call.syncControls());
  if (again) {
    toast(w.resumed ? "You're back online and kept your place." : "You're back online.", {
      kind: "success",
      timeoutMs: 5000,
    });
  }
  if (w.stage === "in_call") {
    state.waiting = null;
    enterCall(w.resumed);
  } else {
    leaveCall();
    if (w.stage === "waiting" || !again) state.ended = null;
    lobby();
  }
}

function onMessage(m) {
  switch (m.type) {
    case "waiting":
      state.waiting = m;
      if (state.stage !== "in_call") {
        state.stage = m.position ? "waiting" : "lobby";
        lobby();
      }
      break;
    case "admitted":
      state.stage = "in_call";
      state.ended = null;
      state.waiting = null; // what it said before the call no longer holds; a new one follows
      toast(m.by ? "The host has let you in." : "You're in the call.", { kind: "success", title: "Admitted", timeoutMs: 6000 });
      enterCall(false);
      break;
    case "roster":
      state.roster = m.participants;
      if (state.stage === "in_call") {
        call.roster(m.participants);
        callNotice();
      }
      break;
    case "ended": {
      leaveCall();
      state.stage = "lobby";
      state.ended = m.reason || "host_ended";
      state.roster = [];
      const [title] = ENDED[state.ended] || ENDED.host_ended;
      toast(`${title}.`, { title: "Call ended" });
      lobby();
      break;
    }
    case "denied":
      state.deniedMessage = m.message ?? null;
      break;
    case "status":
      state.callStatus = m.call_status;
      break;
    case "notice":
      state.notice = m.text;
      renderNotice();
      if (m.text) announce(`Message from your clinician: ${m.text}`);
      break;
    default:
      break; // unknown types are ignored (§3)
  }
}

const SIGNALLING_ERRORS = new Set(["not_in_call", "peer_not_admitted", "peer_unavailable"]);

function onError(m) {
  if (SIGNALLING_ERRORS.has(m.code) || m.code === "rate_limited") {
    console.debug("vestibule:", m.code, m.message);
    return;
  }
  toast(`Something went wrong: ${m.message}.`, { kind: "error", timeoutMs: 8000 });
}

function onClosed(reason) {
  leaveCall();
  local.stop();
  setBanner(null);
  if (reason === "left") {
    message("You have left the visit", ["You can close this page. If you left by mistake, you can go back in."], {
      label: "Go back in",
      onClick: () => connect(),
    });
  } else if (reason === "denied") {
    const paragraphs = ["The host did not let you into this call."];
    if (state.deniedMessage) {
      paragraphs.push(
        el("figure", { class: "host-message" },
          el("figcaption", {}, "Message from the host:"),
          el("blockquote", { id: "denied-message" }, state.deniedMessage)),
      );
    }
    paragraphs.push("If you think this is a mistake, contact the clinic.");
    message("You were not let in", paragraphs, { label: "Ask again", onClick: () => connect() });
  } else if (reason === "replaced") {
    message(
      "This visit is open somewhere else",
      ["You joined from another tab or device, so this window has stepped aside."],
      { label: "Use this window instead", onClick: () => connect() },
    );
  } else {
    message(
      "You're offline",
      [
        "We could not reconnect to the video service.",
        "Check your internet connection, then try again. Your place is kept for a short while.",
      ],
      { label: "Try again", onClick: () => connect() },
    );
  }
}

function onState({ state: s, attempt, delay }) {
  if (s === "reconnecting" && attempt > 0) {
    const seconds = delay ? Math.max(1, Math.round(delay / 1000)) : 0;
    setBanner(
      seconds
        ? `Connection lost. Trying again in ${seconds} second${seconds === 1 ? "" : "s"}…`
        : "Connection lost. Reconnecting…",
    );
  } else if (s === "open") {
    setBanner(null);
  }
}

// -- start ------------------------------------------------------------------------------

function wireControls() {
  $("#name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#name-input");
    const name = input.value.replace(/\s+/g, " ").trim();
    const error = !name ? "Please enter your name." : name.length > 80 ? "Please use at most 80 characters." : null;
    const box = $("#name-error");
    box.hidden = !error;
    box.textContent = error || "";
    input.setAttribute("aria-invalid", String(Boolean(error)));
    if (error) {
      input.focus();
      return;
    }
    state.name = name;
    sessionStorage.setItem(`${link.storageKey}:name`, name);
    connect();
  });
  $("#ask-button").addEventListener("click", () => {
    signal.send({ type: "knock" });
    $("#ask-button").hidden = true;
  });
  $("#join-now-button").addEventListener("click", () => {
    // The server lets us in (admitted) if the rule still allows it, else we wait.
    signal.send({ type: "join" });
    $("#join-now-button").hidden = true;
  });
  $("#cancel-button").addEventListener("click", () => signal.send({ type: "knock_cancel" }));
  const leave = () => signal.leave();
  $("#lobby-leave").addEventListener("click", leave);
  $("#leave-button").addEventListener("click", leave);
}

function main() {
  if (!("WebSocket" in window) || !("RTCPeerConnection" in window)) return unusable("unsupported");
  if (!link.room || !link.token) return unusable("missing");
  ({ signal, call } = connectCall({
    link,
    local,
    // Join now (seed 002): the server tells us when we may join; the patient presses the
    // button once the camera and microphone are ready.
    features: ["join_now"],
    on: { welcome: onWelcome, message: onMessage, error: onError, state: onState, refused: unusable, closed: onClosed },
  }));
  wireControls();
  signal.addEventListener("name_required", (e) => {
    go("name", { focus: false });
    local.start().then(() => call.syncControls());
    const box = $("#name-error");
    const invalid = e.detail.code === "invalid_name";
    box.hidden = !invalid;
    box.textContent = invalid ? `That name can't be used: ${e.detail.message}.` : "";
    $("#name-input").focus();
  });
  connect();
}

// For tests and support (page.js): what the page is showing and how its media flows.
exposeForTests(state, () => ({ signal, call }), () => ({ role: state.role, notice: state.notice }));

main();

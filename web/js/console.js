// The clinician's console (/console/<room>#<clinician token>): signed in with that link (no
// API key: rest.js exchanges it for a console session and a token for the clinician's room,
// so one console serves the whole day), the clinician's name, the current appointment and
// patient, the room's call status, Start call / Join now / Rejoin, the waiting list with
// Admit, Deny and Admit all, notices (sound and tab title) when someone waits, a message to
// the waiting room, the patient link to copy, the call itself (a mesh) and today's
// appointments with their live status and actions (appointments.js).

import { Appointments, CALL_STATUS } from "./appointments.js";
import { roleLabel } from "./callview.js";
import { readLink } from "./link.js";
import { Local } from "./local.js";
import { connectCall, exposeForTests, screens } from "./page.js";
import { signIn } from "./rest.js";
import { $, announce, el, localTime, relative, toast } from "./ui.js";

const TITLE = document.title;
const link = readLink("console");
const local = new Local();
const state = {
  screen: "checking",
  welcome: null,
  participantId: null,
  name: null,
  stage: null,
  callStatus: null,
  sessionId: null,
  roster: [],
  waiting: [],
  seen: new Set(), // waiting participants already announced
  notices: 0,
  beeps: 0,
  reconnecting: false,
  problem: null,
  leaving: false,
  admitAfterStart: null, // {id, name}: Admit clicked before we were in the call
  ownAppointment: null, // {id, startsAt} of this console's link, if it is for one
  callAppointment: undefined, // the appointment of the call we started (null: ad-hoc)
  session: null, // the console session (rest.js), once signed in
  appointments: [], // today's, as last listed
  notice: null, // the message to the waiting room, as the server keeps it
};
let appointments = null;
const lastSessionKey = `${link.storageKey}:session`;
let signal = null;
let call = null;
const { go, message, setBanner } = screens(state);

// -- call status ------------------------------------------------------------------------

const STATUS = {
  ready: ["Ready", "The room is open. Nobody has arrived yet."],
  awaiting_patient: ["Awaiting patient", "You are in the call. The patient has not joined yet."],
  patient_waiting: ["Patient waiting", "Someone is here for this appointment. Start or join the call to see them."],
  in_call: ["In call", "The call is under way."],
  ended: ["Ended", "The call for this appointment has ended. You can start it again if needed."],
  expired: ["Expired", "The time to join this appointment has passed. Ask for a new link if you still need the room."],
};

function renderStatus() {
  const [label, text] = STATUS[state.callStatus] || ["Unknown", ""];
  const badge = $("#status-badge");
  badge.textContent = label;
  badge.dataset.status = state.callStatus || "";
  const inCall = state.stage === "in_call";
  const active = state.sessionId !== null || state.roster.length > 0;
  const which = active && state.callAppointment !== undefined ? appointmentLabel(state.callAppointment) : "";
  $("#status-text").textContent = which ? `${text} (${which})` : text;
  const join = $("#join-button");
  join.hidden = inCall;
  const next = nextAppointment();
  join.textContent = active
    ? sessionStorage.getItem(lastSessionKey) === state.sessionId
      ? "Rejoin"
      : "Join now"
    : next
      ? `Start call: ${appointmentLabel(next.id, next.startsAt)}`
      : "Start call";
  $("#end-button").hidden = !inCall;
  $("#call-area").hidden = !inCall;
  $("#precall").hidden = inCall;
  renderCurrent();
}

/** Which appointment and patient the console is on: the call's, else the next one. */
function renderCurrent() {
  const open = state.appointments.filter((a) => !["cancelled", "expired", "completed", "no_show"].includes(a.status));
  const inCall = open.find((a) => a.call_status === "in_call" || a.call_status === "awaiting_patient");
  const waiting = open.find((a) => a.call_status === "patient_waiting");
  const now = Date.now();
  const next = open.find((a) => Date.parse(a.end_time) > now);
  const current = inCall || waiting || next || null;
  const line = $("#current");
  line.dataset.currentAppointment = current ? current.id : "";
  if (!current) {
    line.textContent = state.session ? "No more appointments today." : "";
  } else {
    const when = localTime(Date.parse(current.start_time) / 1000, { withDate: false });
    const who = current.attendee_name || "the patient";
    const what = inCall ? "Now" : waiting ? "Waiting" : "Next";
    const status = CALL_STATUS[current.call_status] || "";
    line.textContent = `${what}: ${when} ${current.title} with ${who}${status ? ` (${status.toLowerCase()})` : ""}`;
  }
  // The current appointment's patient link; else the one the console was opened with.
  const patientLink = (current && current.video_link) || link.params.get("patient");
  $("#link-known").hidden = !patientLink;
  $("#link-unknown").hidden = Boolean(patientLink);
  if (patientLink) $("#patient-link").value = patientLink;
}

function renderNotice() {
  const box = $("#notice-current");
  box.hidden = !state.notice;
  box.textContent = state.notice ? `Shown to everyone waiting: “${state.notice}”` : "";
  $("#notice-clear").hidden = !state.notice;
}

// -- appointments -----------------------------------------------------------------------

const appointmentTimes = new Map(); // appointment id -> start time, from links seen here

function appointmentLabel(id, startsAt = appointmentTimes.get(id)) {
  if (!id) return "no appointment";
  return startsAt ? `${localTime(startsAt, { withDate: false })} appointment` : "appointment";
}

/** The appointment Start call starts: this link's own, else that of the first person
 * waiting whose link is for one (the next patient), else none (an ad-hoc call). */
function nextAppointment() {
  if (state.ownAppointment) return state.ownAppointment;
  const waiting = state.waiting.filter((e) => e.appointment_id);
  waiting.sort((a, b) => (a.starts_at ?? Infinity) - (b.starts_at ?? Infinity));
  return waiting.length ? { id: waiting[0].appointment_id, startsAt: waiting[0].starts_at } : null;
}

// Why each person in the waiting list is there (waiting_list entries' reason, §6.5).
const WHY = {
  host_not_started: () => "waiting for the call to start",
  host_away: () => "waiting for you to come back to the call",
  host_busy: () => "waiting for their own appointment",
  at_capacity: () => "asks to join",
  not_booked: () => "asks to join (their link has no appointment)",
  host_ready: () => "joining now",
};

// -- waiting list -----------------------------------------------------------------------

function renderWaiting() {
  const list = $("#waiting-list");
  const active = state.sessionId !== null || state.roster.length > 0;
  const entries = state.waiting;
  $("#waiting-count").textContent = entries.length ? `(${entries.length})` : "";
  $("#waiting-empty").hidden = entries.length > 0;
  // Admit all takes those waiting for this call, not the next appointment's (§5).
  const forThisCall = entries.some((e) => e.reason !== "host_busy");
  $("#admit-all-row").hidden = !(active && state.stage === "in_call" && forThisCall);
  $("#waiting-hint").textContent = !entries.length
    ? ""
    : active
      ? "Admit lets someone in even when the call is full, or before their own appointment. End this call to start the next appointment."
      : "Starting an appointment's call lets its patients in; others wait for their own appointment. Admit starts that person's call and lets them in.";
  // Keep an open deny form (and its text) across re-renders.
  const open = list.querySelector(".deny-form");
  const openFor = open ? open.dataset.for : null;
  const openText = open ? open.querySelector("textarea").value : "";
  const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement.id : null;
  list.replaceChildren(
    ...entries.map((entry) => {
      const id = entry.participant_id;
      const name = entry.name || roleLabel(entry.role);
      const why = (WHY[entry.reason] || WHY.host_not_started)(entry);
      const since = entry.since ? `Arrived ${localTime(entry.since, { withDate: false })} (${relative(entry.since)})` : "";
      if (entry.appointment_id && entry.starts_at) appointmentTimes.set(entry.appointment_id, entry.starts_at);
      const row = el(
        "li",
        { "data-participant": id, "data-appointment": entry.appointment_id || "", "data-reason": entry.reason },
        el("div", { class: "who" },
          el("strong", {}, `${entry.position}. ${name}`),
          el("span", { class: "appointment" },
            entry.appointment_id ? `Appointment ${entry.starts_at ? localTime(entry.starts_at) : ""}`.trim() : "No appointment"),
          el("span", {}, `${roleLabel(entry.role)} · ${why}`),
          el("span", {}, since),
          entry.connected ? null : el("span", { class: "away" }, "Connection lost: keeping their place for now")),
      );
      const actions = el("div", { class: "row-actions" });
      if (!active && entry.appointment_id) {
        const begin = el("button", { type: "button", class: "primary", id: `start-${id}` }, "Start their appointment");
        begin.setAttribute("aria-label", `Start the ${appointmentLabel(entry.appointment_id, entry.starts_at)} for ${name}`);
        begin.addEventListener("click", () => start(entry.appointment_id));
        actions.append(begin);
      }
      const admit = el("button", { type: "button", class: "primary", id: `admit-${id}` }, "Admit");
      admit.setAttribute("aria-label", `Admit ${name}`);
      admit.addEventListener("click", () => admitOne(id, name));
      actions.append(admit);
      const deny = el("button", { type: "button", id: `deny-${id}`, "aria-label": `Deny ${name}` }, "Deny");
      deny.addEventListener("click", () => openDeny(row, id, name));
      actions.append(deny);
      row.append(actions);
      if (openFor === id) openDeny(row, id, name, openText, false);
      return row;
    }),
  );
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  updateTitle();
}

function openDeny(row, id, name, text = "", focus = true) {
  if (row.querySelector(".deny-form")) return;
  const areaId = `deny-message-${id}`;
  const form = el(
    "form",
    { class: "deny-form", "data-for": id },
    el("label", { for: areaId }, `Message to ${name} (optional)`),
    el("textarea", { id: areaId, maxlength: "500" }),
    el("div", { class: "row-actions" },
      el("button", { type: "submit", class: "danger" }, `Deny ${name}`),
      el("button", { type: "button", class: "quiet", "data-cancel": "" }, "Cancel")),
  );
  const area = form.querySelector("textarea");
  area.value = text;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const msg = area.value.trim();
    const deny = { type: "deny", participant_id: id };
    if (msg) deny.message = msg;
    command(deny, `deny ${name}`);
    form.remove();
  });
  form.querySelector("[data-cancel]").addEventListener("click", () => {
    form.remove();
    const button = document.getElementById(`deny-${id}`);
    if (button) button.focus();
  });
  row.append(form);
  if (focus) area.focus();
}

/** Announce people who started waiting since the last list: notice, sound, title. */
function noticeArrivals(entries) {
  const fresh = entries.filter((e) => !state.seen.has(e.participant_id));
  for (const entry of entries) state.seen.add(entry.participant_id);
  for (const gone of [...state.seen]) {
    if (!entries.some((e) => e.participant_id === gone)) state.seen.delete(gone);
  }
  for (const entry of fresh) {
    const name = entry.name || roleLabel(entry.role);
    const asking = entry.reason === "at_capacity";
    // Admit works before the call has started too: it starts (or rejoins) the call first.
    const actions = [
      { label: "Admit", primary: true, onClick: () => admitOne(entry.participant_id, name) },
      { label: "Deny…", onClick: () => focusDeny(entry.participant_id) },
    ];
    state.notices += 1;
    const when = entry.appointment_id ? ` (${appointmentLabel(entry.appointment_id, entry.starts_at)})` : "";
    toast(asking ? `${name} is asking to join the call.` : `${name} is in the waiting room${when}.`, {
      title: asking ? "Ask to join" : "Patient waiting",
      kind: "warning",
      actions,
      id: `wait-${entry.participant_id}`,
    });
  }
  if (fresh.length) beep();
  // Notices of people no longer waiting are stale.
  for (const box of document.querySelectorAll("[data-toast-id^='wait-']")) {
    const id = box.dataset.toastId.slice(5);
    if (!entries.some((e) => e.participant_id === id)) box.remove();
  }
}

function focusDeny(id) {
  const button = document.getElementById(`deny-${id}`);
  if (button) button.click();
}

function updateTitle() {
  const n = state.waiting.length;
  document.title = n ? `(${n}) waiting — ${TITLE}` : TITLE;
}

// -- sound (WebAudio: no audio file) ------------------------------------------------------

let audio = null;

function unlockAudio() {
  // Browsers start audio only after a user gesture: create and resume the context on the
  // first click or key press.
  try {
    if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  } catch {
    audio = null;
  }
}

function beep() {
  if (!$("#sound-alerts").checked) return;
  state.beeps += 1;
  try {
    if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
    const t = audio.currentTime + 0.01;
    for (const [offset, frequency] of [[0, 880], [0.22, 1175]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, t + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, t + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + offset + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + offset);
      osc.stop(t + offset + 0.22);
    }
  } catch {
    /* no sound; the notice and the title still show */
  }
}

// -- roster -----------------------------------------------------------------------------

function renderRoster() {
  const list = $("#roster-list");
  $("#roster-empty").hidden = state.roster.length > 0;
  list.replaceChildren(
    ...state.roster.map((p) =>
      el("li", { "data-participant": p.participant_id },
        el("div", { class: "who" },
          el("strong", {}, `${p.name || roleLabel(p.role)}${p.participant_id === state.participantId ? " (you)" : ""}`),
          el("span", {}, `${roleLabel(p.role)}${p.connected ? "" : " · reconnecting…"}`))),
    ),
  );
}

// -- commands ---------------------------------------------------------------------------

const pending = new Map(); // message id -> what it was, for error notices

function command(message, what) {
  const id = signal.send(message);
  if (id === null) {
    toast(`Could not ${what}: not connected. Try again in a moment.`, { kind: "error" });
    return;
  }
  pending.set(id, what);
  if (pending.size > 100) pending.delete(pending.keys().next().value);
}

/** Start (or rejoin) the call: of `appointment` if given, else of the next appointment
 * (nextAppointment), else an ad-hoc call. */
async function start(appointment = undefined) {
  unlockAudio();
  await local.start();
  const active = state.sessionId !== null || state.roster.length > 0;
  const next = appointment ?? (active ? null : nextAppointment()?.id ?? null);
  const message = next ? { type: "start", appointment: next } : { type: "start" };
  if (!active) state.callAppointment = next ?? state.ownAppointment?.id ?? null;
  command(message, "start the call");
}

/** Admit one waiting person. Before we are in the call (not started, or we stepped out), the
 * server refuses admit (session_not_started), so: start or rejoin the call, which lets booked
 * patients in by the rules, then, on our own `admitted`, admit the person if still waiting. */
function admitOne(id, name) {
  if (state.stage === "in_call") {
    command({ type: "admit", participant_id: id }, `admit ${name}`);
    return;
  }
  state.admitAfterStart = { id, name };
  // Start that person's own appointment, if their link is for one.
  const entry = state.waiting.find((e) => e.participant_id === id);
  const active = state.sessionId !== null || state.roster.length > 0;
  start(!active && entry && entry.appointment_id ? entry.appointment_id : undefined);
}

function admitPending() {
  const wanted = state.admitAfterStart;
  state.admitAfterStart = null;
  if (!wanted || !state.waiting.some((e) => e.participant_id === wanted.id)) return;
  const ref = signal.send({ type: "admit", participant_id: wanted.id });
  // The start may have let them in already (our waiting list can lag by a message): an
  // error then is no news; otherwise say so.
  if (ref !== null) quietAdmits.set(ref, wanted);
}

const quietAdmits = new Map(); // message id -> {id, name}, for the admit after a start

// -- the connection ---------------------------------------------------------------------

function connect() {
  state.problem = null;
  go("checking");
  signal.start();
}

function onWelcome(w) {
  const again = state.welcome !== null;
  state.welcome = w;
  state.participantId = w.participant_id;
  state.name = w.name;
  state.stage = w.stage;
  state.callStatus = w.call_status;
  state.sessionId = w.session_id;
  state.ownAppointment = w.appointment_id ? { id: w.appointment_id, startsAt: w.starts_at } : null;
  if (w.appointment_id && w.starts_at) appointmentTimes.set(w.appointment_id, w.starts_at);
  if (w.role !== "host") {
    // A patient's or guest's link opened on the console: send it to the patient page.
    signal.leave();
    location.replace(`/join/${encodeURIComponent(link.room)}#${link.token}`);
    return;
  }
  const name = (state.session && state.session.name) || w.name;
  $("#who").textContent = name ? `Signed in as ${name}` : "Signed in with the room's link";
  $("#console-title").textContent = name ? `${name}'s room` : "Your room";
  local.start().then(() => call.syncControls());
  if (state.screen !== "console") go("console");
  if (again && !state.leaving) toast("Reconnected.", { kind: "success", timeoutMs: 4000 });
  state.leaving = false;
  if (w.stage === "in_call") enterCall(w.resumed);
  else call.exit();
  renderStatus();
  renderWaiting();
  renderRoster();
}

function enterCall(resumed) {
  state.stage = "in_call";
  if (state.sessionId) sessionStorage.setItem(lastSessionKey, state.sessionId);
  call.enter({ selfId: state.participantId, selfName: state.name, iceServers: state.welcome.ice_servers, resumed });
  call.roster(state.roster);
  renderStatus();
  renderWaiting();
}

function onMessage(m) {
  switch (m.type) {
    case "status":
      state.callStatus = m.call_status;
      renderStatus();
      break;
    case "admitted":
      state.sessionId = m.session_id;
      enterCall(false);
      announce("You are in the call.");
      admitPending();
      break;
    case "ended":
      state.stage = "lobby";
      state.sessionId = null;
      state.callAppointment = undefined;
      call.exit();
      renderStatus();
      renderWaiting();
      announce(
        m.reason === "host_absent"
          ? "The call ended: you were away from it too long."
          : m.reason === "window_closed"
            ? "The call ended: the appointment's time is over."
            : "The call has ended.",
      );
      break;
    case "roster":
      state.roster = m.participants;
      if (state.stage === "in_call") call.roster(m.participants);
      renderRoster();
      renderStatus();
      break;
    case "notice":
      state.notice = m.text;
      renderNotice();
      break;
    case "waiting_list":
      noticeArrivals(m.entries);
      state.waiting = m.entries;
      renderWaiting();
      renderStatus(); // Start call names the next appointment
      break;
    default:
      break;
  }
}

function onError(m) {
  if (m.ref && quietAdmits.has(m.ref)) {
    const wanted = quietAdmits.get(m.ref);
    quietAdmits.delete(m.ref);
    setTimeout(() => {
      if (!state.roster.some((p) => p.participant_id === wanted.id)) {
        toast(`Could not admit ${wanted.name}: ${m.message}.`, { kind: "error" });
      }
    }, 1000);
    return;
  }
  const what = m.ref ? pending.get(m.ref) : null;
  if (what === "start the call") {
    state.admitAfterStart = null;
    state.callAppointment = undefined;
  }
  if (m.ref) pending.delete(m.ref);
  if (!what) {
    console.debug("vestibule:", m.code, m.message);
    return;
  }
  toast(`Could not ${what}: ${m.message}.`, { kind: "error" });
}

const UNUSABLE = {
  token_expired: ["This clinician link has expired", "Open the room again from the booking system to get a fresh link."],
  link_revoked: ["This clinician link was withdrawn", "The appointment may have changed. Open the room again from the booking system."],
  room_closed: ["This appointment's room has closed", "The time to join has passed."],
  missing: ["The link is incomplete", "Open the console from the full clinician link, including the part after “#”."],
};

function unusable(code, details = {}) {
  state.problem = code;
  call.exit();
  local.stop();
  if (code === "room_not_open" || code === "token_not_yet_valid") {
    const opens = details.opens_at ?? details.not_before;
    const when = typeof opens === "number" ? `The room opens at ${localTime(opens)} (${relative(opens)}).` : "The room is not open yet.";
    message("It's too early to open this room", [when], { label: "Try again", onClick: () => connect() });
    return;
  }
  const [title, text] = UNUSABLE[code] || ["This link doesn't work", "Open the console again from the booking system."];
  message(title, [text]);
}

function onClosed(reason) {
  if (reason === "left" && state.leaving) {
    // "Leave call": the protocol's leave leaves the room, so come back as a new arrival in
    // the lobby, where the waiting list stays in view and "Rejoin" brings us back.
    call.exit();
    signal.start();
    return;
  }
  call.exit();
  local.stop();
  if (reason === "replaced") {
    message("The console is open somewhere else", ["You opened this room in another tab or device."], {
      label: "Use this window",
      onClick: () => connect(),
    });
  } else {
    message("Disconnected", ["The console lost its connection to the video service."], {
      label: "Reconnect",
      onClick: () => connect(),
    });
  }
}

function onState({ state: s, attempt }) {
  if (s === "reconnecting" && attempt > 0) setBanner("Connection lost. Reconnecting…");
  else if (s === "open") setBanner(null);
}

// -- start ------------------------------------------------------------------------------

function wire() {
  document.addEventListener("pointerdown", unlockAudio, { capture: true });
  document.addEventListener("keydown", unlockAudio, { capture: true });
  $("#join-button").addEventListener("click", () => start());
  $("#end-button").addEventListener("click", () => command({ type: "end" }, "end the call"));
  $("#leave-button").addEventListener("click", () => {
    state.leaving = true;
    signal.leave();
  });
  $("#admit-all").addEventListener("click", () => command({ type: "admit_all" }, "admit everyone"));
  $("#notice-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#notice-text").value.trim();
    if (!text) return;
    command({ type: "notice", text }, "send the message");
    $("#notice-text").value = "";
    announce("Message sent to the waiting room.");
  });
  $("#notice-clear").addEventListener("click", () => command({ type: "notice", text: "" }, "take the message back"));
  $("#copy-link").addEventListener("click", () => copyText($("#patient-link").value, $("#patient-link")));
}

/** Copy to the clipboard; falls back to selecting the text for the user. */
export async function copyText(text, input = null) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Link copied. Paste it into your message to the patient.", { kind: "success", timeoutMs: 4000 });
    return true;
  } catch {
    if (input) {
      input.focus();
      input.select();
    }
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    toast(ok ? "Link copied." : "Press Ctrl+C (or ⌘C) to copy the selected link.", { kind: ok ? "success" : "info" });
    return ok;
  }
}

async function main() {
  if (!link.room || !link.token) {
    go("message");
    const [title, text] = UNUSABLE.missing;
    message(title, [text]);
    return;
  }
  appointments = new Appointments($("#appointments"), {
    room: link.room,
    copyText,
    onStart: (id) => start(id),
    onChange: (items) => {
      state.appointments = items;
      for (const a of items) appointmentTimes.set(a.id, Date.parse(a.start_time) / 1000);
      renderStatus();
    },
  });
  // Sign in with the link: the console session lists the day; its room token (no
  // appointment, no join window) keeps this console usable from one patient to the next.
  let room = link;
  try {
    state.session = await signIn(link.room, link.token);
    room = { ...link, token: state.session.room_token };
    appointments.start();
  } catch (error) {
    appointments.unavailable(
      error.code === "NO_CLINICIAN"
        ? "This link is for a room without a clinician of its own, so there is no appointment list here."
        : error.code === "NOT_A_CLINICIAN_LINK"
          ? "This is not a clinician's link."
          : `Today's appointments could not be loaded: ${error.message}.`,
    );
  }
  ({ signal, call } = connectCall({
    link: room,
    local,
    on: { welcome: onWelcome, message: onMessage, error: onError, state: onState, refused: unusable, closed: onClosed },
  }));
  wire();
  // "Arrived … (2 minutes ago)" stays true.
  setInterval(() => state.waiting.length && renderWaiting(), 30000);
  connect();
}

// For tests and support (page.js): what the console is showing and how its media flows.
exposeForTests(state, () => ({ signal, call }), () => ({
  sessionId: state.sessionId,
  callAppointment: state.callAppointment ?? null,
  signedIn: Boolean(state.session),
  listLoads: appointments ? appointments.loads : 0,
  notice: state.notice,
  notices: state.notices,
  beeps: state.beeps,
  audio: audio ? audio.state : null,
}));

main();

// The hosted booking page, /book/<clinician id> (seed 001): the patient picks a day and a
// time (shown in their own time zone), the time is held for them while they give their
// name and e-mail (a countdown shows how long), they confirm and get their join link.
// A hold that runs out says so and offers the times free now.
//
// The hold secret the API returns lives in this module's memory only: never in the URL,
// storage or a log. Name and e-mail go in the confirm request's body, nowhere else.

import { publicApi } from "./rest.js";
import { $, announce, el, showScreen, toast } from "./ui.js";

const DAYS = 14; // dates per page of slots

const state = {
  screen: "loading",
  clinician: decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || ""),
  zone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  from: null, // first date shown (YYYY-MM-DD), null: today
  slots: [], // {start_time, end_time, date, local_time, ...}
  day: null, // the chosen date
  holdSeconds: 900,
  hold: null, // {id, start_time, end_time, deadline (ms)} ; the secret is kept apart
  booking: null, // {id, status}
  expired: false, // the last hold ran out: the slots say so
  problem: null,
};
let secret = null; // the hold secret: memory only
let ticking = null;

function show(screen) {
  state.screen = screen;
  showScreen(screen);
}

function when(slot) {
  const options = { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit", timeZone: state.zone };
  const start = new Date(slot.start_time).toLocaleString(undefined, options);
  const end = new Date(slot.end_time).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", timeZone: state.zone });
  return `${start}–${end}`;
}

function dayLabel(date) {
  // Noon UTC of the date is the same calendar day in every zone's display here.
  return new Date(`${date}T12:00:00Z`).toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });
}

function addDays(date, days) {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

// -- slots --------------------------------------------------------------------------------

async function loadSlots() {
  const query = new URLSearchParams({ time_zone: state.zone });
  if (state.from) {
    query.set("from", state.from);
    query.set("to", addDays(state.from, DAYS - 1));
  }
  try {
    const { data, meta } = await publicApi("GET", `/clinicians/${encodeURIComponent(state.clinician)}/slots?${query}`);
    state.slots = data;
    state.holdSeconds = meta.hold_seconds;
  } catch (error) {
    if (error.status === 404 && error.code === "NOT_FOUND") {
      return message("This clinician does not take bookings here", "Check the link you were given, or contact the clinic.");
    }
    return message("The free times could not be loaded", `Please try again in a moment. (${error.message})`);
  }
  const dates = [...new Set(state.slots.map((s) => s.date))];
  if (!dates.includes(state.day)) state.day = dates[0] || null;
  renderSlots();
  $("#expired-note").hidden = !state.expired;
  show("slots");
}

function renderSlots() {
  $("#zone-name").textContent = state.zone;
  $("#zone-note").textContent = `Times in ${state.zone}`;
  const byDate = new Map();
  for (const slot of state.slots) {
    if (!byDate.has(slot.date)) byDate.set(slot.date, []);
    byDate.get(slot.date).push(slot);
  }
  $("#days-empty").hidden = byDate.size > 0;
  $("#days").replaceChildren(
    ...[...byDate].map(([date, slots]) => {
      const button = el("button", { type: "button", "data-date": date, "aria-pressed": String(date === state.day) },
        el("strong", {}, dayLabel(date)), el("span", { class: "sub" }, `${slots.length} free`));
      button.addEventListener("click", () => {
        state.day = date;
        renderSlots();
      });
      return button;
    }),
  );
  $("#times").replaceChildren(
    ...(byDate.get(state.day) || []).map((slot) => {
      const button = el("button", { type: "button", "data-start": slot.start_time }, slot.local_time);
      button.setAttribute("aria-label", `Book ${when(slot)}`);
      button.addEventListener("click", () => hold(slot, button));
      return button;
    }),
  );
}

// -- the hold -----------------------------------------------------------------------------

async function hold(slot, button) {
  button.disabled = true;
  state.expired = false;
  try {
    const { data } = await publicApi("POST", `/clinicians/${encodeURIComponent(state.clinician)}/holds`, { start_time: slot.start_time });
    secret = data.hold_secret;
    state.hold = { id: data.id, start_time: data.start_time, end_time: data.end_time, deadline: Date.now() + state.holdSeconds * 1000 };
  } catch (error) {
    button.disabled = false;
    if (error.code === "SLOT_TAKEN" || error.code === "SLOT_UNAVAILABLE") {
      toast("That time has just been taken. Please pick another one.", { kind: "warning" });
      return loadSlots();
    }
    return toast(`The time could not be held: ${error.message}.`, { kind: "error" });
  }
  $("#chosen").textContent = when(state.hold);
  for (const id of Object.keys(INPUT_OF)) fieldError(id, "");
  show("details");
  tick();
  clearInterval(ticking);
  ticking = setInterval(tick, 1000);
  announce(`We are holding ${when(state.hold)} for you.`);
}

function left() {
  return state.hold ? Math.max(0, Math.round((state.hold.deadline - Date.now()) / 1000)) : 0;
}

function tick() {
  const seconds = left();
  const text = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  const countdown = $("#countdown");
  countdown.dataset.seconds = String(seconds);
  countdown.textContent = `We are holding this time for you for ${text} more.`;
  if (seconds === 0) expired();
}

async function expired() {
  clearInterval(ticking);
  secret = null;
  state.hold = null;
  state.expired = true;
  await loadSlots();
  announce("Your hold has expired. The times free now are shown.");
}

async function release() {
  clearInterval(ticking);
  const held = state.hold;
  const key = secret;
  state.hold = null;
  secret = null;
  if (held && key) {
    // Best effort: if it fails, the hold simply runs out.
    publicApi("POST", `/holds/${encodeURIComponent(held.id)}/release`, { hold_secret: key }).catch(() => {});
  }
  await loadSlots();
}

const INPUT_OF = { "#name-error": "#name-input", "#email-error": "#email-input" };

function fieldError(id, text) {
  const node = $(id);
  node.hidden = !text;
  node.textContent = text || "";
  $(INPUT_OF[id]).setAttribute("aria-invalid", text ? "true" : "false");
}

async function confirm(event) {
  event.preventDefault();
  const name = $("#name-input").value.trim();
  const email = $("#email-input").value.trim();
  fieldError("#name-error", name ? "" : "Please give your name.");
  fieldError("#email-error", /^[^\s@]+@[^\s@]+$/.test(email) ? "" : "Please give an e-mail address, like name@example.org.");
  if (!name || !/^[^\s@]+@[^\s@]+$/.test(email) || !state.hold) return;
  const button = $("#confirm-button");
  button.disabled = true;
  try {
    const { data } = await publicApi("POST", `/holds/${encodeURIComponent(state.hold.id)}/confirm`, {
      hold_secret: secret,
      attendee_name: name,
      attendee_email: email,
    });
    done(data, email);
  } catch (error) {
    if (error.code === "HOLD_EXPIRED" || error.code === "NOT_FOUND") return expired();
    if (error.code === "SLOT_TAKEN") {
      toast("That time has just been booked by the clinic. Please pick another one.", { kind: "warning" });
      return release();
    }
    if (error.code === "VALIDATION_ERROR" && error.details) {
      const field = error.details.field === "attendee_email" ? "#email-error" : "#name-error";
      return fieldError(field, error.message);
    }
    toast(`The appointment could not be confirmed: ${error.message}.`, { kind: "error" });
  } finally {
    button.disabled = false;
  }
}

function done(booking, email) {
  clearInterval(ticking);
  secret = null;
  state.booking = { id: booking.id, status: booking.status };
  state.hold = null;
  $("#done-when").textContent = when(booking);
  const join = new URL(booking.video_link, location.href);
  $("#join-link").href = join.href;
  $("#cancel-link").href = `/cancel.html#${join.hash.replace(/^#/, "")}`;
  $("#copy-join").onclick = () => navigator.clipboard.writeText(join.href).then(
    () => toast("Link copied.", { kind: "success" }),
    () => toast("The link could not be copied: select it and copy it yourself.", { kind: "warning" }),
  );
  const note = $("#sent-note");
  note.hidden = !booking.invitation_channel;
  note.textContent = booking.invitation_channel === "email" ? `We have also sent it to ${email}.` : "We have also sent it to you.";
  show("done");
}

function message(title, body) {
  state.problem = title;
  $("#message-title").textContent = title;
  $("#message-body").replaceChildren(el("p", {}, body));
  show("message");
}

// -- start --------------------------------------------------------------------------------

$("#details-form").addEventListener("submit", confirm);
$("#another-button").addEventListener("click", release);
$("#later").addEventListener("click", () => {
  const last = state.slots.length ? state.slots[state.slots.length - 1].date : null;
  state.from = addDays(last || state.from || new Date().toISOString().slice(0, 10), 1);
  loadSlots();
});

// For tests and support: what the page shows. Never the hold secret, a name or a link.
window.vestibule = {
  state: () => ({
    screen: state.screen,
    zone: state.zone,
    days: [...new Set(state.slots.map((s) => s.date))],
    day: state.day,
    slots: state.slots.filter((s) => s.date === state.day).map((s) => s.start_time),
    hold: state.hold ? { id: state.hold.id, start_time: state.hold.start_time, secondsLeft: left() } : null,
    booking: state.booking,
    expired: state.expired,
    problem: state.problem,
  }),
  log: () => [],
};

if (!state.clinician) message("This booking link is incomplete", "Check the link you were given.");
else loadSlots();

// Today's appointments in the console, from the REST API (/api/v1, see its openapi.json):
// each with its call status, Open (the clinician's link), Copy link (the patient's),
// Send to patient, the invitations sent with their delivery status and the room activity
// (a timeline, refreshed every few seconds while it is open). Open goes to the room in
// this page; "New tab" opens it in another tab (clinician token in the fragment only).
//
// The API needs a key (Authorization: Bearer vk_...). Until clinicians sign in, the console
// asks for one and keeps it in sessionStorage: this tab only, gone when it closes.

import { $, el, localTime, toast } from "./ui.js";

const KEY = "vestibule:api-key";
const REFRESH_MS = 30000;
const PENDING_POLL_MS = 3000;
const PENDING_POLL_MAX = 40; // about two minutes of polling for a pending invitation
const ACTIVITY_POLL_MS = 5000; // an open "Room activity" list is refreshed this often

// Our wording for each kind of room event (GET /appointments/{id}/activity). The API gives
// roles, never names. `who` is the role's label ("Patient", "Guest", "Clinician").
const ACTIVITY = {
  arrived: (who) => `${who} opened the link`,
  departed: (who) => `${who} left the room`,
  knocked: (who) => `${who} knocked`,
  knock_cancelled: (who) => `Knock cancelled (${who.toLowerCase()})`,
  admitted: (who) => `Admitted (${who.toLowerCase()})`,
  denied: (who) => `Denied (${who.toLowerCase()})`,
  patient_entered: (who) => `${who} entered`,
  patient_exited: (who) => `${who} exited`,
  clinician_entered: () => "Clinician entered",
  clinician_exited: () => "Clinician exited",
  session_started: () => "Session started",
  session_ended: () => "Session ended",
  disconnected: (who) => `Connection lost (${who.toLowerCase()})`,
  reconnected: (who) => `Reconnected (${who.toLowerCase()})`,
};

function roleName(role) {
  return { host: "Clinician", patient: "Patient", guest: "Guest" }[role] || "Participant";
}

/** An ISO time as the user's local time of day, to the second. */
function clock(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

const CALL_STATUS = {
  ready: "Ready",
  awaiting_patient: "Awaiting patient",
  patient_waiting: "Patient waiting",
  in_call: "In call",
  ended: "Ended",
  expired: "Expired",
};

export class Appointments {
  constructor(root, { copyText }) {
    this.root = root;
    this.copyText = copyText;
    this.room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
    this.timer = null;
    this.polls = new Map(); // appointment id -> polls left
    this.items = [];
    this.openActivity = new Set(); // appointment ids whose "Room activity" is open
    this.activityTimer = null;
    this.activityLoading = new Set();
  }

  init() {
    const input = $("#api-key", this.root);
    input.value = sessionStorage.getItem(KEY) || "";
    $("#api-form", this.root).addEventListener("submit", (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (key) sessionStorage.setItem(KEY, key);
      else sessionStorage.removeItem(KEY);
      this.load();
    });
    if (input.value) this.load();
  }

  async api(method, path, body = undefined) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
    }
    const response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok) {
      const error = new Error((payload && payload.error && payload.error.message) || `HTTP ${response.status}`);
      error.status = response.status;
      error.code = payload && payload.error ? payload.error.code : null;
      throw error;
    }
    return payload ? payload.data : null;
  }

  async load() {
    clearTimeout(this.timer);
    const note = $("#appointments-note", this.root);
    if (!sessionStorage.getItem(KEY)) {
      note.textContent = "Enter the clinic's API key to list today's appointments.";
      $("#appointments-table", this.root).replaceChildren();
      return;
    }
    const from = new Date();
    from.setHours(0, 0, 0, 0);
    const to = new Date(from);
    to.setDate(to.getDate() + 1);
    const query = new URLSearchParams({ date_gte: from.toISOString(), date_lte: to.toISOString(), limit: "100" });
    try {
      const all = await this.api("GET", `/appointments?${query}`);
      const mine = all.filter((a) => a.room_id === this.room);
      this.items = (mine.length ? mine : all).sort((a, b) => a.start_time.localeCompare(b.start_time));
      note.textContent = !all.length
        ? "No appointments today."
        : mine.length
          ? `${mine.length} appointment${mine.length === 1 ? "" : "s"} in this room today.`
          : `No appointment today is in this room; showing all ${all.length}.`;
      await this.render();
    } catch (error) {
      note.textContent =
        error.status === 401 ? "The API key was not accepted." : `Could not load the appointments: ${error.message}.`;
      return;
    }
    this.timer = setTimeout(() => this.load(), REFRESH_MS);
  }

  async render() {
    const rows = await Promise.all(this.items.map((a) => this.row(a)));
    const table = el(
      "table",
      {},
      el("caption", { class: "visually-hidden" }, "Today's appointments"),
      el("thead", {}, el("tr", {}, ...["Time", "Patient", "Status", "Call", "Actions"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows),
    );
    $("#appointments-table", this.root).replaceChildren(table);
    // Open lists stay open across re-renders, with their last entries until refreshed.
    for (const id of this.openActivity) this.refreshActivity(id);
  }

  async row(a) {
    const start = Date.parse(a.start_time) / 1000;
    const end = Date.parse(a.end_time) / 1000;
    const actions = el("div", { class: "row-actions" });
    if (a.meeting_url) {
      // Open (or Join, once the call is under way) here or in a new tab.
      const verb = a.call_status === "in_call" || a.call_status === "patient_waiting" ? "Join" : "Open";
      const open = el("button", { type: "button" }, `${verb} here`);
      open.setAttribute("aria-label", `${verb} the room for ${a.title} in this page`);
      open.addEventListener("click", () => location.assign(consoleUrl(a)));
      const tab = el("a", { class: "button", href: consoleUrl(a), target: "_blank", rel: "noopener noreferrer", "data-new-tab": "" }, "New tab");
      tab.setAttribute("aria-label", `${verb} the room for ${a.title} in a new tab`);
      actions.append(open, tab);
    }
    if (a.video_link) {
      const copy = el("button", { type: "button" }, "Copy link");
      copy.setAttribute("aria-label", `Copy the patient link for ${a.title}`);
      copy.addEventListener("click", () => this.copyText(a.video_link));
      actions.append(copy);
      const send = el("button", { type: "button", class: "primary" }, "Send to patient");
      send.setAttribute("aria-label", `Send the link to the patient of ${a.title}`);
      send.addEventListener("click", () => this.send(a, send));
      actions.append(send);
    }
    const invitations = a.video_link ? await this.invitations(a) : null;
    return el(
      "tr",
      { "data-appointment": a.id },
      el("td", {}, `${localTime(start, { withDate: false })}–${localTime(end, { withDate: false })}`),
      el("td", {}, el("strong", {}, a.attendee_name || "—"), el("div", { class: "sub" }, a.title)),
      el("td", {}, a.status),
      el("td", {}, a.call_status ? el("span", { class: "status-badge", "data-status": a.call_status }, CALL_STATUS[a.call_status] || a.call_status) : "—"),
      el("td", {}, actions, invitations, a.room_id ? this.activity(a) : null),
    );
  }

  // -- room activity ----------------------------------------------------------------------

  activity(a) {
    const details = el(
      "details",
      { "data-activity": a.id },
      el("summary", {}, "Room activity"),
      el("p", { class: "sub", "data-activity-note": "" }, "Loading…"),
      el("ol", { class: "people timeline" }),
    );
    // Re-rendered rows keep what the old list showed until the refresh comes back.
    const old = this.root.querySelector(`details[data-activity="${CSS.escape(a.id)}"]`);
    if (old && this.openActivity.has(a.id)) {
      details.replaceChildren(...old.childNodes);
      details.open = true;
    }
    details.addEventListener("toggle", () => {
      if (details.open) {
        this.openActivity.add(a.id);
        this.refreshActivity(a.id);
      } else {
        this.openActivity.delete(a.id);
      }
      this.#activityPolling();
    });
    return details;
  }

  /** Poll the open lists (none open, or the tab hidden: no requests). */
  #activityPolling() {
    if (!this.openActivity.size) {
      clearInterval(this.activityTimer);
      this.activityTimer = null;
      return;
    }
    if (this.activityTimer) return;
    this.activityTimer = setInterval(() => {
      if (document.hidden) return;
      for (const id of this.openActivity) this.refreshActivity(id);
    }, ACTIVITY_POLL_MS);
  }

  async refreshActivity(id) {
    if (this.activityLoading.has(id)) return;
    this.activityLoading.add(id);
    let events = null;
    let failed = null;
    try {
      events = await this.api("GET", `/appointments/${encodeURIComponent(id)}/activity`);
    } catch (error) {
      failed = error;
    } finally {
      this.activityLoading.delete(id);
    }
    const details = this.root.querySelector(`details[data-activity="${CSS.escape(id)}"]`);
    if (!details) return;
    const note = details.querySelector("[data-activity-note]");
    if (failed) {
      note.hidden = false;
      note.textContent = `The room activity could not be loaded: ${failed.message}.`;
      return;
    }
    note.hidden = events.length > 0;
    note.textContent = events.length ? "" : "Nothing has happened in the room yet.";
    details.querySelector("summary").textContent = `Room activity (${events.length})`;
    details.querySelector("ol").replaceChildren(
      ...events.map((e) => {
        const what = (ACTIVITY[e.kind] || (() => e.kind))(roleName(e.role));
        return el("li", { "data-kind": e.kind, "data-role": e.role || "" },
          el("div", { class: "who" },
            el("strong", {}, what),
            el("time", { datetime: e.at }, clock(e.at))));
      }),
    );
  }

  async invitations(a) {
    let list = [];
    try {
      list = await this.api("GET", `/appointments/${encodeURIComponent(a.id)}/invitations?limit=20`);
    } catch {
      return el("p", { class: "sub" }, "Invitations could not be loaded.");
    }
    if (!list.length) return el("p", { class: "sub" }, "No invitation sent yet.");
    const label = { sent: "Sent", pending: "Pending", failed: "Failed" };
    const details = el(
      "details",
      {},
      el("summary", {}, `Invitations sent (${list.length})`),
      el(
        "ul",
        { class: "people" },
        ...list.map((i) =>
          el("li", { "data-invitation": i.id, "data-status": i.status },
            el("div", { class: "who" },
              el("strong", {}, label[i.status] || i.status),
              el("span", {}, `${i.channel} to ${i.to_hint} · ${localTime(Date.parse(i.created_at) / 1000, { withDate: false })}`),
              i.last_error && i.status !== "sent" ? el("span", {}, i.last_error) : null)),
        ),
      ),
    );
    if (list.some((i) => i.status === "pending")) this.#poll(a);
    return details;
  }

  async send(a, button) {
    button.disabled = true;
    try {
      const invitation = await this.api("POST", `/appointments/${encodeURIComponent(a.id)}/invitations`, {});
      toast(`Link queued for ${a.attendee_name || "the patient"} (${invitation.channel} to ${invitation.to_hint}).`, {
        kind: "success",
      });
      this.polls.set(a.id, PENDING_POLL_MAX);
      await this.render();
    } catch (error) {
      toast(`Could not send the link: ${error.message}.`, { kind: "error" });
    } finally {
      button.disabled = false;
    }
  }

  #poll(a) {
    const left = this.polls.has(a.id) ? this.polls.get(a.id) : PENDING_POLL_MAX;
    if (left <= 0 || this.pollTimer) return;
    this.polls.set(a.id, left - 1);
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.render();
    }, PENDING_POLL_MS);
  }
}

/** The console address for an appointment: its clinician token, plus its patient link. */
function consoleUrl(a) {
  const url = new URL(a.meeting_url, location.href);
  const token = url.hash.replace(/^#/, "");
  const room = url.pathname.split("/").filter(Boolean)[1] || "";
  const patient = a.video_link ? `&patient=${encodeURIComponent(a.video_link)}` : "";
  return `/console/${room}#${token}${patient}`;
}

// Today's appointments in the console, from the REST API (/api/v1, see its openapi.json):
// each with its status in words, its call status, Open (the clinician's link), Copy link
// (the patient's), Send to patient, Cancel (with a reason, which the clinician must give:
// seed 001), the invitations sent with their delivery status and the room activity (a
// timeline with the booking's events, refreshed every few seconds while it is open). Open
// goes to the room in this page; "New tab" opens it in another tab (clinician token in the
// fragment only). Cancelled appointments and expired holds drop out of the list unless
// "Show cancelled and expired" is ticked; a cancelled one shows who cancelled and why.
//
// The API needs a key: web/js/rest.js keeps it, for this tab only, until clinicians sign in.

import { api, apiKey, setApiKey } from "./rest.js";
import { $, el, localTime, toast } from "./ui.js";
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
  // The booking's events: `who` is who acted (patient, clinician, the clinic's system).
  held: (who) => `Slot held (${who.toLowerCase()})`,
  confirmed: (who) => `Booking confirmed (${who.toLowerCase()})`,
  expired: () => "Hold expired",
  cancelled: (who) => `Cancelled (${who.toLowerCase()})`,
};

const STATUS = {
  pending_approval: "Awaiting approval",
  pending: "Pending",
  confirmed: "Confirmed",
  scheduled: "Scheduled",
  held: "Held: the patient is booking",
  expired: "Hold expired",
  cancelled: "Cancelled",
  completed: "Completed",
  no_show: "No-show",
};
const CLOSED = new Set(["cancelled", "expired"]); // hidden unless asked for
const CANCELLABLE = new Set(["pending_approval", "pending", "confirmed", "scheduled", "held"]);
const BY = { patient: "the patient", clinician: "the clinician", api: "the clinic's system", system: "the system" };

function actorName(actor) {
  return { patient: "Patient", clinician: "Clinician", api: "Clinic system", system: "System" }[actor] || "Someone";
}

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
    input.value = apiKey();
    $("#api-form", this.root).addEventListener("submit", (event) => {
      event.preventDefault();
      setApiKey(input.value.trim());
      this.load();
    });
    // Cancelled appointments and expired holds are out of the list unless asked for.
    this.showClosed = el("input", { id: "show-closed", type: "checkbox" });
    this.showClosed.addEventListener("change", () => this.load());
    $("#appointments-note", this.root).before(
      el("label", { class: "check", for: "show-closed" }, this.showClosed, "Show cancelled and expired"),
    );
    if (input.value) this.load();
  }

  api(method, path, body = undefined) {
    return api(method, path, body);
  }

  async load() {
    clearTimeout(this.timer);
    const note = $("#appointments-note", this.root);
    if (!apiKey()) {
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
      const listed = await this.api("GET", `/appointments?${query}`);
      const all = this.showClosed.checked ? listed : listed.filter((a) => !CLOSED.has(a.status));
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
    if (CANCELLABLE.has(a.status)) {
      const cancel = el("button", { type: "button", class: "danger" }, "Cancel");
      cancel.setAttribute("aria-label", `Cancel ${a.title}`);
      cancel.addEventListener("click", () => this.askCancel(a, actions, cancel));
      actions.append(cancel);
    }
    const invitations = a.video_link ? await this.invitations(a) : null;
    return el(
      "tr",
      { "data-appointment": a.id },
      el("td", {}, `${localTime(start, { withDate: false })}–${localTime(end, { withDate: false })}`),
      el("td", {}, el("strong", {}, a.attendee_name || "—"), el("div", { class: "sub" }, a.title)),
      el("td", {}, el("span", { "data-appointment-status": a.status }, STATUS[a.status] || a.status), this.cancellation(a)),
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
        const who = e.actor ? actorName(e.actor) : roleName(e.role);
        const what = (ACTIVITY[e.kind] || (() => e.kind))(who);
        return el("li", { "data-kind": e.kind, "data-role": e.role || "", "data-actor": e.actor || "" },
          el("div", { class: "who" },
            el("strong", {}, what),
            el("time", { datetime: e.at }, clock(e.at))));
      }),
    );
  }

  // -- cancelling ------------------------------------------------------------------------

  /** Who cancelled and why, under the status of a cancelled appointment (seed 001). */
  cancellation(a) {
    if (a.status !== "cancelled") return null;
    const by = BY[a.cancelled_by] || "someone";
    const text = a.cancellation_reason ? `By ${by}: “${a.cancellation_reason}”` : `By ${by}, no reason given`;
    return el("div", { class: "sub", "data-cancellation": "" }, text);
  }

  /** The cancel form: a reason is required when the clinician cancels. */
  askCancel(a, actions, button) {
    if (actions.querySelector(".cancel-form")) return;
    button.disabled = true;
    const id = `cancel-reason-${a.id}`;
    const reason = el("textarea", { id, required: true, maxlength: "1000", rows: "2" });
    const error = el("p", { class: "field-error", role: "alert", hidden: true });
    const form = el("form", { class: "deny-form cancel-form", novalidate: true },
      el("label", { for: id }, `Why is ${a.title} cancelled? (required)`),
      reason, error,
      el("div", { class: "row-actions" },
        el("button", { type: "submit", class: "danger" }, "Cancel appointment"),
        el("button", { type: "button", class: "quiet", "data-keep": "" }, "Keep it")));
    form.querySelector("[data-keep]").addEventListener("click", () => {
      form.remove();
      button.disabled = false;
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = reason.value.trim();
      if (!text) {
        error.hidden = false;
        error.textContent = "Give a reason: support and the patient see it.";
        reason.setAttribute("aria-invalid", "true");
        return;
      }
      try {
        await this.api("POST", `/appointments/${encodeURIComponent(a.id)}/cancel`, {
          cancellation_reason: text,
          cancelled_by: "clinician",
        });
        toast(`${a.title} is cancelled.`, { kind: "success" });
        await this.load();
      } catch (failure) {
        error.hidden = false;
        error.textContent = `Could not cancel: ${failure.message}.`;
      }
    });
    actions.append(form);
    reason.focus();
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

// Today's appointments in the console, for the signed-in clinician (rest.js: the console
// session, no API key): each with its status and call status in words, the patient, and only
// the actions the server says can work now (`actions`: Send to patient, Complete, Mark
// no-show once the join window has closed, Cancel with a required reason), Start (when the
// patient is waiting), Copy link, the invitations (Sent / Pending / Failed) and the room
// activity (loaded when opened, in a box of its own height). A status filter narrows the
// list. The list follows the server's event stream (GET /console/events): every change is
// pushed, and the list is read again at once; nothing is polled.

import { consoleApi, consoleEvents } from "./rest.js";
import { $, el, localTime, toast } from "./ui.js";

// Our wording for each kind of room event (GET .../activity): roles, never names.
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
  notice: () => "Message sent to the patient",
  held: (who) => `Slot held (${who.toLowerCase()})`,
  confirmed: (who) => `Booking confirmed (${who.toLowerCase()})`,
  expired: () => "Hold expired",
  cancelled: (who) => `Cancelled (${who.toLowerCase()})`,
};

export const STATUS = {
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
export const CALL_STATUS = {
  ready: "Ready",
  awaiting_patient: "Awaiting patient",
  patient_waiting: "Patient waiting",
  in_call: "In call",
  ended: "Ended",
  expired: "Expired",
};
const FILTERS = {
  open: ["Still to see", (a) => !["cancelled", "expired", "completed", "no_show"].includes(a.status)],
  all: ["All of today", () => true],
  waiting: ["Patient waiting", (a) => a.call_status === "patient_waiting"],
  completed: ["Completed", (a) => a.status === "completed"],
  no_show: ["No-show", (a) => a.status === "no_show"],
  cancelled: ["Cancelled", (a) => a.status === "cancelled"],
};
const INVITATION = { sent: "Sent", pending: "Pending", failed: "Failed" };
const BY = { patient: "the patient", clinician: "the clinician", api: "the clinic's system", system: "the system" };

function roleName(role) {
  return { host: "Clinician", patient: "Patient", guest: "Guest" }[role] || "Participant";
}

function actorName(actor) {
  return { patient: "Patient", clinician: "Clinician", api: "Clinic system", system: "System" }[actor] || "Someone";
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export class Appointments {
  /** root: the #appointments card. room: the console's room. onStart(appointment id): the
   * console starts that appointment's call. onChange(items): after each load. */
  constructor(root, { room, copyText, onStart, onChange }) {
    this.root = root;
    this.room = room;
    this.copyText = copyText;
    this.onStart = onStart;
    this.onChange = onChange || (() => {});
    this.items = [];
    this.loads = 0;
    this.pending = null;
    this.stream = null;
  }

  /** Show the list of the signed-in clinician and follow its changes. */
  start() {
    const filter = $("#appointment-filter", this.root);
    filter.replaceChildren(...Object.entries(FILTERS).map(([value, [label]]) => el("option", { value }, label)));
    filter.addEventListener("change", () => this.render());
    $("#appointment-tools", this.root).hidden = false;
    this.stream = consoleEvents(this.room, (kind) => {
      if (kind === "ready" || kind === "changed") this.schedule();
    });
  }

  /** No list: the link is not a clinician's own room (or signing in failed). */
  unavailable(text) {
    $("#appointments-note", this.root).textContent = text;
  }

  schedule() {
    // Changes come in bursts (a call starting is several events): one read for them.
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.load(), 150);
  }

  async load() {
    const from = new Date();
    from.setHours(0, 0, 0, 0);
    const to = new Date(from);
    to.setDate(to.getDate() + 1);
    const query = new URLSearchParams({ date_gte: from.toISOString(), date_lte: to.toISOString(), limit: "100" });
    try {
      this.items = await consoleApi(this.room, "GET", `/console/appointments?${query}`);
    } catch (error) {
      $("#appointments-note", this.root).textContent = `Could not load today's appointments: ${error.message}.`;
      return;
    }
    this.loads += 1;
    this.render();
    this.onChange(this.items);
  }

  render() {
    const [, keep] = FILTERS[$("#appointment-filter", this.root).value] || FILTERS.open;
    const shown = this.items.filter(keep);
    const note = $("#appointments-note", this.root);
    note.textContent = !this.items.length
      ? "No appointments today."
      : `${shown.length} of ${this.items.length} appointment${this.items.length === 1 ? "" : "s"} today.`;
    // Open activity lists and cancel forms stay open across renders.
    const open = new Set([...this.root.querySelectorAll("details[data-activity][open]")].map((d) => d.dataset.activity));
    const typing = this.root.querySelector(".cancel-form");
    const table = el(
      "table",
      {},
      el("caption", { class: "visually-hidden" }, "Today's appointments"),
      el("thead", {}, el("tr", {}, ...["Time", "Patient", "Status", "Call", "Actions"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...shown.map((a) => this.row(a, open.has(a.id)))),
    );
    $("#appointments-table", this.root).replaceChildren(table);
    if (typing) {
      const row = this.root.querySelector(`tr[data-appointment="${CSS.escape(typing.dataset.for)}"] .row-actions`);
      if (row) row.append(typing);
    }
  }

  row(a, activityOpen) {
    const start = Date.parse(a.start_time) / 1000;
    const end = Date.parse(a.end_time) / 1000;
    const patient = a.attendee_name || "the patient";
    const actions = el("div", { class: "row-actions" });
    const button = (label, aria, onClick, kind = "") => {
      const b = el("button", { type: "button", class: kind || null, "aria-label": aria }, label);
      b.addEventListener("click", () => onClick(b));
      actions.append(b);
      return b;
    };
    if (a.call_status === "patient_waiting" && a.room_id === this.room && a.actions.includes("complete")) {
      button("Start", `Start the call of ${a.title} with ${patient}`, () => this.onStart(a.id), "primary");
    }
    if (a.actions.includes("send")) button("Send to patient", `Send the link to ${patient}`, (b) => this.send(a, b));
    if (a.video_link && a.actions.includes("complete")) {
      button("Copy link", `Copy the patient link of ${a.title}`, () => this.copyText(a.video_link));
    }
    if (a.actions.includes("complete")) button("Complete", `Mark ${a.title} completed`, (b) => this.act(a, "complete", b));
    if (a.actions.includes("no_show")) button("Mark no-show", `Mark ${a.title} a no-show`, (b) => this.act(a, "no_show", b));
    if (a.actions.includes("cancel")) button("Cancel", `Cancel ${a.title}`, (b) => this.askCancel(a, actions, b), "danger");
    return el(
      "tr",
      { "data-appointment": a.id, "data-status": a.status },
      el("td", {}, `${localTime(start, { withDate: false })}–${localTime(end, { withDate: false })}`),
      el("td", {}, el("strong", {}, a.attendee_name || "—"), el("div", { class: "sub" }, a.title)),
      el("td", {}, el("span", { "data-appointment-status": a.status }, STATUS[a.status] || "Unknown"), this.cancellation(a)),
      el("td", {}, a.call_status ? el("span", { class: "status-badge", "data-status": a.call_status }, CALL_STATUS[a.call_status] || "Unknown") : "—"),
      el("td", {}, actions, this.invitations(a), a.room_id ? this.activity(a, activityOpen) : null),
    );
  }

  cancellation(a) {
    if (a.status !== "cancelled") return null;
    const by = BY[a.cancelled_by] || "someone";
    const text = a.cancellation_reason ? `By ${by}: “${a.cancellation_reason}”` : `By ${by}, no reason given`;
    return el("div", { class: "sub", "data-cancellation": "" }, text);
  }

  invitations(a) {
    if (!a.invitations.length) return a.actions.includes("send") ? el("p", { class: "sub" }, "No invitation sent yet.") : null;
    const counts = { sent: 0, pending: 0, failed: 0 };
    for (const i of a.invitations) counts[i.status] += 1;
    const summary = Object.entries(counts).map(([k, n]) => `${INVITATION[k]} ${n}`).join(" · ");
    return el(
      "details",
      { "data-invitations": a.id },
      el("summary", {}, `Invitations: ${summary}`),
      el("ul", { class: "people" },
        ...a.invitations.map((i) =>
          el("li", { "data-invitation": i.id, "data-status": i.status },
            el("div", { class: "who" },
              el("strong", {}, INVITATION[i.status] || i.status),
              el("span", {}, `${i.channel} to ${i.to_hint} · ${localTime(Date.parse(i.created_at) / 1000, { withDate: false })}`),
              i.last_error && i.status !== "sent" ? el("span", {}, i.last_error) : null)))),
    );
  }

  activity(a, open) {
    const details = el(
      "details",
      { "data-activity": a.id },
      el("summary", {}, "Room activity"),
      el("p", { class: "sub", "data-activity-note": "" }, "Loading…"),
      el("ol", { class: "people timeline" }),
    );
    details.addEventListener("toggle", () => details.open && this.refreshActivity(a.id, details));
    if (open) {
      details.open = true;
      this.refreshActivity(a.id, details);
    }
    return details;
  }

  async refreshActivity(id, details) {
    let events;
    try {
      events = await consoleApi(this.room, "GET", `/console/appointments/${encodeURIComponent(id)}/activity`);
    } catch (error) {
      details.querySelector("[data-activity-note]").textContent = `The room activity could not be loaded: ${error.message}.`;
      return;
    }
    const note = details.querySelector("[data-activity-note]");
    note.hidden = events.length > 0;
    note.textContent = events.length ? "" : "Nothing has happened in the room yet.";
    details.querySelector("summary").textContent = `Room activity (${events.length})`;
    details.querySelector("ol").replaceChildren(
      ...events.map((e) => {
        const who = e.actor ? actorName(e.actor) : roleName(e.role);
        const what = (ACTIVITY[e.kind] || (() => "Other event"))(who);
        return el("li", { "data-kind": e.kind }, el("div", { class: "who" }, el("strong", {}, what), el("time", { datetime: e.at }, clock(e.at))));
      }),
    );
  }

  async act(a, action, button) {
    button.disabled = true;
    try {
      await consoleApi(this.room, "POST", `/console/appointments/${encodeURIComponent(a.id)}/${action}`, {});
      toast(action === "complete" ? `${a.title} is completed.` : `${a.title} is marked a no-show.`, { kind: "success" });
    } catch (error) {
      button.disabled = false;
      toast(`Could not update ${a.title}: ${error.message}.`, { kind: "error" });
    }
  }

  askCancel(a, actions, button) {
    if (actions.querySelector(".cancel-form")) return;
    button.disabled = true;
    const id = `cancel-reason-${a.id}`;
    const reason = el("textarea", { id, required: true, maxlength: "1000", rows: "2" });
    const error = el("p", { class: "field-error", role: "alert", hidden: true });
    const form = el("form", { class: "deny-form cancel-form", novalidate: true, "data-for": a.id },
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
        await consoleApi(this.room, "POST", `/console/appointments/${encodeURIComponent(a.id)}/cancel`, { cancellation_reason: text });
        form.remove();
        toast(`${a.title} is cancelled.`, { kind: "success" });
      } catch (failure) {
        error.hidden = false;
        error.textContent = `Could not cancel: ${failure.message}.`;
      }
    });
    actions.append(form);
    reason.focus();
  }

  async send(a, button) {
    button.disabled = true;
    try {
      const invitation = await consoleApi(this.room, "POST", `/console/appointments/${encodeURIComponent(a.id)}/invitations`, {});
      toast(`Link queued for ${a.attendee_name || "the patient"} (${invitation.channel} to ${invitation.to_hint}).`, { kind: "success" });
    } catch (error) {
      toast(`Could not send the link: ${error.message}.`, { kind: "error" });
    } finally {
      button.disabled = false;
    }
  }
}

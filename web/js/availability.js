// The clinician's availability page, /availability.html?clinician=<id>: weekly windows
// (add, edit, switch off and on, remove) and days off, through the REST API with the
// clinic's API key (web/js/rest.js keeps it), plus the clinician's booking link to share.
// Times are shown and typed as HH:MM; the API counts minutes since midnight (540 = 09:00).

import { api, apiKey, setApiKey } from "./rest.js";
import { $, el, toast } from "./ui.js";

const DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const state = { clinician: new URLSearchParams(location.search).get("clinician") || "", windows: [], daysOff: [], loaded: false };

const hhmm = (minutes) => `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
const minutes = (text) => {
  const [h, m] = text.split(":").map(Number);
  return h * 60 + m;
};
const title = (day) => day[0].toUpperCase() + day.slice(1);
const base = () => `/clinicians/${encodeURIComponent(state.clinician)}/availability`;

async function load() {
  const note = $("#availability-note");
  if (!state.clinician || !apiKey()) {
    note.textContent = "Enter the clinician id and the clinic's API key.";
    return;
  }
  try {
    state.windows = await api("GET", `${base()}/windows?limit=100`);
    state.daysOff = await api("GET", `${base()}/exceptions?limit=100`);
  } catch (error) {
    note.textContent = error.status === 401 ? "The API key was not accepted." : `Could not load the availability: ${error.message}.`;
    return;
  }
  state.loaded = true;
  note.textContent = `${state.windows.length} window${state.windows.length === 1 ? "" : "s"}, ${state.daysOff.length} day${state.daysOff.length === 1 ? "" : "s"} off.`;
  $("#who").textContent = state.clinician;
  const link = `${location.origin}/book/${encodeURIComponent(state.clinician)}`;
  $("#booking-link").value = link;
  $("#booking-link-row").hidden = !state.windows.some((w) => w.active);
  render();
}

function render() {
  $("#windows-empty").hidden = state.windows.length > 0;
  const rows = state.windows.map((w) => {
    const toggle = el("button", { type: "button" }, w.active ? "Switch off" : "Switch on");
    toggle.setAttribute("aria-label", `${w.active ? "Switch off" : "Switch on"} ${describe(w)}`);
    toggle.addEventListener("click", () => change(w, { active: !w.active }));
    const edit = el("button", { type: "button" }, "Edit");
    edit.setAttribute("aria-label", `Edit ${describe(w)}`);
    edit.addEventListener("click", () => editRow(w));
    const remove = el("button", { type: "button", class: "danger" }, "Remove");
    remove.setAttribute("aria-label", `Remove ${describe(w)}`);
    remove.addEventListener("click", () => removeWindow(w));
    const valid = [w.valid_from && `from ${w.valid_from}`, w.valid_until && `until ${w.valid_until}`].filter(Boolean).join(" ") || "Always";
    return el("tr", { "data-window": w.id, "data-active": String(w.active) },
      el("td", {}, el("strong", {}, title(w.day))),
      el("td", {}, `${hhmm(w.start_minute)}–${hhmm(w.end_minute)}`, el("div", { class: "sub" }, w.time_zone)),
      el("td", {}, `${w.slot_length_minutes} min${w.slot_minutes === null ? " (default)" : ""}`,
        el("div", { class: "sub" }, w.buffer_minutes ? `${w.buffer_minutes} min between` : "no buffer")),
      el("td", {}, valid),
      el("td", {}, el("span", { class: "status-badge", "data-status": w.active ? "in_call" : "ended" }, w.active ? "On" : "Off")),
      el("td", {}, el("div", { class: "row-actions" }, edit, toggle, remove)));
  });
  const table = el("table", {},
    el("caption", { class: "visually-hidden" }, "Weekly availability windows"),
    el("thead", {}, el("tr", {}, ...["Day", "Hours", "Slots", "Valid", "Status", "Actions"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows));
  $("#windows-table").replaceChildren(...(rows.length ? [table] : []));
  $("#days-off-empty").hidden = state.daysOff.length > 0;
  $("#days-off").replaceChildren(...state.daysOff.map((d) => {
    const remove = el("button", { type: "button" }, "Remove");
    remove.setAttribute("aria-label", `Remove the day off on ${d.date}`);
    remove.addEventListener("click", () => removeDayOff(d));
    const day = new Date(`${d.date}T12:00:00Z`).toLocaleDateString(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
    return el("li", { "data-day-off": d.id },
      el("div", { class: "who" }, el("strong", {}, day), d.note ? el("span", {}, d.note) : null),
      el("div", { class: "row-actions" }, remove));
  }));
}

function describe(w) {
  return `the ${title(w.day)} window ${hhmm(w.start_minute)}–${hhmm(w.end_minute)}`;
}

// -- the window form, for adding and editing ---------------------------------------------

function fields(form, w = null) {
  const zone = w ? w.time_zone : Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const prefix = w ? `edit-${w.id}` : "new";
  const input = (name, label, attributes, help = null) => el("div", {},
    el("label", { for: `${prefix}-${name}` }, label),
    el("input", { id: `${prefix}-${name}`, name, ...attributes }),
    help ? el("p", { class: "hint" }, help) : null);
  const day = el("select", { id: `${prefix}-day`, name: "day" }, ...DAYS.map((d) => el("option", { value: d, selected: w ? w.day === d : d === "monday" }, title(d))));
  form.replaceChildren(
    el("div", {}, el("label", { for: `${prefix}-day` }, "Day"), day),
    input("start", "From", { type: "time", required: true, value: hhmm(w ? w.start_minute : 540) }),
    input("end", "Until", { type: "time", required: true, value: w ? hhmm(w.end_minute % 1440) : "12:00" }, "00:00 is midnight, the end of the day."),
    input("time_zone", "Time zone", { type: "text", required: true, value: zone, maxlength: "64" }),
    input("slot", "Slot length (minutes)", { type: "number", min: "5", max: "480", value: w && w.slot_minutes ? String(w.slot_minutes) : "", placeholder: "default" }),
    input("buffer", "Minutes between slots", { type: "number", min: "0", max: "240", value: String(w ? w.buffer_minutes : 0) }),
    input("valid_from", "Valid from (optional)", { type: "date", value: w && w.valid_from ? w.valid_from : "" }),
    input("valid_until", "Valid until (optional)", { type: "date", value: w && w.valid_until ? w.valid_until : "" }),
    el("p", { class: "field-error", role: "alert", hidden: true, "data-form-error": "" }),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary" }, w ? "Save" : "Add window")),
  );
}

function values(form) {
  const get = (name) => form.elements[name].value.trim();
  const end = minutes(get("end")) || 1440; // 00:00: midnight at the end of the day
  return {
    day: get("day"),
    start_minute: minutes(get("start")),
    end_minute: end,
    time_zone: get("time_zone"),
    slot_minutes: get("slot") ? Number(get("slot")) : null,
    buffer_minutes: get("buffer") ? Number(get("buffer")) : 0,
    valid_from: get("valid_from") || null,
    valid_until: get("valid_until") || null,
  };
}

function formError(form, error) {
  const box = form.querySelector("[data-form-error]");
  box.hidden = !error;
  box.textContent = error ? error.message : "";
}

function editRow(w) {
  const row = document.querySelector(`tr[data-window="${CSS.escape(w.id)}"]`);
  const form = el("form", { class: "window-form", novalidate: true, "data-edit": w.id });
  fields(form, w);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PATCH", `${base()}/windows/${encodeURIComponent(w.id)}`, values(form));
      toast("Window saved.", { kind: "success" });
      await load();
    } catch (error) {
      formError(form, error);
    }
  });
  row.after(el("tr", { class: "edit-row" }, el("td", { colspan: "6" }, form)));
}

async function change(w, patch) {
  try {
    await api("PATCH", `${base()}/windows/${encodeURIComponent(w.id)}`, patch);
    await load();
  } catch (error) {
    toast(`Could not change the window: ${error.message}.`, { kind: "error" });
  }
}

async function removeWindow(w) {
  try {
    await api("DELETE", `${base()}/windows/${encodeURIComponent(w.id)}`);
    toast(`Removed ${describe(w)}. It is kept in the history.`, { kind: "success" });
    await load();
  } catch (error) {
    toast(`Could not remove the window: ${error.message}.`, { kind: "error" });
  }
}

async function removeDayOff(d) {
  try {
    await api("DELETE", `${base()}/exceptions/${encodeURIComponent(d.id)}`);
    await load();
  } catch (error) {
    toast(`Could not remove the day off: ${error.message}.`, { kind: "error" });
  }
}

// -- start --------------------------------------------------------------------------------

const newForm = $("#window-form");
fields(newForm);
newForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("POST", `${base()}/windows`, values(newForm));
    fields(newForm); // a fresh form for the next one
    toast("Window added.", { kind: "success" });
    await load();
  } catch (error) {
    formError(newForm, error);
  }
});

$("#day-off-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const date = $("#day-off-date").value;
  const note = $("#day-off-note").value.trim();
  if (!date) return toast("Pick a date.", { kind: "warning" });
  try {
    await api("POST", `${base()}/exceptions`, note ? { date, note } : { date });
    $("#day-off-date").value = "";
    $("#day-off-note").value = "";
    await load();
  } catch (error) {
    toast(`Could not add the day off: ${error.message}.`, { kind: "error" });
  }
});

$("#copy-booking-link").addEventListener("click", () =>
  navigator.clipboard.writeText($("#booking-link").value).then(
    () => toast("Booking link copied.", { kind: "success" }),
    () => toast("Select the link and copy it yourself.", { kind: "warning" }),
  ));

$("#clinician-input").value = state.clinician;
$("#api-key").value = apiKey();
$("#access-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.clinician = $("#clinician-input").value.trim();
  setApiKey($("#api-key").value.trim());
  history.replaceState(history.state, "", `?clinician=${encodeURIComponent(state.clinician)}`);
  load();
});

window.vestibule = {
  state: () => ({ screen: "availability", loaded: state.loaded, clinician: state.clinician, windows: state.windows.length, daysOff: state.daysOff.length }),
  log: () => [],
};

load();

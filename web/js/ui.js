// Small DOM helpers shared by the patient page and the clinician console.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Show one screen (a [data-screen] section) and hide the others; move focus to its heading
 * so keyboard and screen-reader users land on what changed. */
export function showScreen(name, { focus = true } = {}) {
  let shown = null;
  for (const screen of $$("main [data-screen]")) {
    const on = screen.dataset.screen === name;
    screen.hidden = !on;
    if (on) shown = screen;
  }
  document.body.dataset.current = name;
  if (shown && focus) {
    const heading = shown.querySelector("h1, h2");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: false });
    }
  }
  return shown;
}

/** Say something to screen readers (and show it in the polite live region). */
export function announce(text) {
  const region = $("#announcer");
  if (!region) return;
  region.textContent = "";
  // A separate task, so the same text twice is announced twice.
  setTimeout(() => (region.textContent = text), 50);
}

/**
 * A notice in the lower corner. kind: "info" | "success" | "warning" | "error".
 * actions: [{label, onClick}]. Notices with actions stay until used or dismissed.
 */
const MAX_TOASTS = 3;

export function toast(text, { kind = "info", title = null, actions = [], timeoutMs = 8000, id = null } = {}) {
  const stack = $("#toasts");
  if (id) {
    const old = stack.querySelector(`[data-toast-id="${CSS.escape(id)}"]`);
    if (old) old.remove();
  }
  // The stack is the live region (aria-live, in the page from the start); errors interrupt.
  const box = el("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null });
  if (id) box.dataset.toastId = id;
  if (title) box.append(el("p", { class: "toast-title" }, title));
  box.append(el("p", { class: "toast-text" }, text));
  const row = el("div", { class: "toast-actions" });
  for (const action of actions) {
    const button = el("button", { type: "button", class: action.primary ? "primary" : "" }, action.label);
    button.addEventListener("click", () => {
      box.remove();
      action.onClick();
    });
    row.append(button);
  }
  const close = el("button", { type: "button", class: "quiet", "aria-label": "Dismiss notice" }, "Dismiss");
  close.addEventListener("click", () => box.remove());
  row.append(close);
  box.append(row);
  stack.append(box);
  // A few at a time: the oldest without actions make way (they were announced already).
  const plain = [...stack.children].filter((b) => !b.querySelector(".toast-actions .primary"));
  while (stack.children.length > MAX_TOASTS && plain.length) plain.shift().remove();
  if (!actions.length && timeoutMs) setTimeout(() => box.remove(), timeoutMs);
  return box;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** A unix time (seconds) as the user's local date and time. */
export function localTime(seconds, { withDate = true } = {}) {
  const date = new Date(seconds * 1000);
  const options = withDate
    ? { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" };
  return date.toLocaleString(undefined, options);
}

/** "in 25 minutes", "in 2 hours", "3 minutes ago". */
export function relative(seconds) {
  const delta = seconds - Date.now() / 1000;
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const abs = Math.abs(delta);
  if (abs < 60) return format.format(Math.round(delta), "second");
  if (abs < 3600) return format.format(Math.round(delta / 60), "minute");
  if (abs < 86400) return format.format(Math.round(delta / 3600), "hour");
  return format.format(Math.round(delta / 86400), "day");
}

export function ordinal(n) {
  const rules = new Intl.PluralRules("en", { type: "ordinal" });
  const suffix = { one: "st", two: "nd", few: "rd", other: "th" }[rules.select(n)];
  return `${n}${suffix}`;
}

/** Play a video element; if the browser blocks sound without a click, play muted and call
 * `blocked()` so the page can offer a "turn sound on" button. */
export function playVideo(video, blocked) {
  const attempt = video.play();
  if (attempt && attempt.catch) {
    attempt.catch(() => {
      if (video.muted) return;
      video.muted = true;
      video.play().catch(() => {});
      blocked();
    });
  }
}

/** A video tile: <figure> with a <video> and a caption. */
export function videoTile({ id, label, self = false }) {
  const video = el("video", { autoplay: true, playsinline: true });
  video.muted = self; // never play our own microphone back
  if (self) video.classList.add("mirror");
  const state = el("span", { class: "tile-state", "aria-live": "polite" });
  const caption = el("figcaption", {}, el("span", { class: "tile-name" }, label), state);
  const figure = el("figure", { class: self ? "tile tile-self" : "tile", "data-peer": id }, video, caption);
  return { figure, video, state };
}

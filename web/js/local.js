// The local camera and microphone, shared by the pages: asked for once, shown in the device
// check panel (built here, the same on both pages), and handed to the call.

import { DeviceCheck, PROBLEMS, openLocalMedia } from "./media.js";
import { $, el } from "./ui.js";

export class Local {
  /** Puts the (hidden) #devices panel into the page, before #toasts, if it is not there. */
  constructor() {
    if (!$("#devices")) document.body.insertBefore(devicePanel(), $("#toasts"));
    this.stream = null;
    this.problem = null;
    this.ready = null; // a promise, set by start()
    this.check = null;
    this.onSwitch = () => {};
  }

  /** Ask for the devices (once) and show them in the #devices panel. */
  start() {
    if (this.ready) return this.ready;
    const panel = $("#devices");
    panel.hidden = false;
    if (!this.check) this.check = new DeviceCheck(panel, this, (kind, track) => this.onSwitch(kind, track));
    this.ready = openLocalMedia().then(async ({ stream, problem }) => {
      this.stream = stream;
      this.problem = problem;
      const preview = $("#preview");
      preview.srcObject = stream;
      if (stream) preview.play().catch(() => {});
      const box = $("#device-problem");
      box.hidden = !problem;
      box.textContent = problem ? PROBLEMS[problem] : "";
      $("#preview-off").hidden = Boolean(stream && stream.getVideoTracks().length);
      try {
        await this.check.refresh();
      } catch {
        /* the list is a nicety */
      }
      return this;
    });
    return this.ready;
  }

  /** Release the camera (after leaving): its light goes off. */
  stop() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.ready = null;
    const preview = $("#preview");
    if (preview) preview.srcObject = null;
  }
}

/** The camera and microphone panel: preview, what was found, device selects, and the
 * preview's mute and camera buttons (CallView keeps them in step with the call's). */
function devicePanel() {
  const preview = el("video", {
    id: "preview",
    class: "mirror",
    autoplay: true,
    playsinline: true,
    muted: true,
    "aria-label": "Your camera preview",
  });
  // The muted attribute mutes only a <video> the HTML parser made: set the property too, or
  // the preview plays our own microphone back.
  preview.muted = true;
  const toggle = (id, label) =>
    el("button", { id, type: "button", "aria-pressed": "false" }, el("span", { class: "label" }, label));
  return el(
    "aside",
    { id: "devices", class: "devices", "aria-labelledby": "devices-title", hidden: true },
    el("h2", { id: "devices-title" }, "Camera and microphone"),
    el(
      "div",
      { class: "preview" },
      preview,
      el("p", { id: "preview-off", class: "preview-off", hidden: true }, "Camera off"),
    ),
    el(
      "p",
      { id: "device-summary", "data-devices": true, class: "hint", "aria-live": "polite" },
      "Asking your browser for the camera and microphone…",
    ),
    el("p", { id: "device-problem", class: "notice-warning", role: "alert", hidden: true }),
    el(
      "div",
      { class: "device-selects" },
      el("label", { for: "camera-select" }, "Camera"),
      el("select", { id: "camera-select", "data-camera-select": true, disabled: true }),
      el("label", { for: "mic-select" }, "Microphone"),
      el("select", { id: "mic-select", "data-mic-select": true, disabled: true }),
    ),
    el("div", { class: "actions" }, toggle("preview-mute", "Mute"), toggle("preview-camera", "Stop camera")),
  );
}

/** Move the device check panel into the current screen's slot, if it has one. */
export function placeDevices(screen) {
  const slot = screen && screen.querySelector("[data-device-slot]");
  const panel = $("#devices");
  if (slot && panel.parentElement !== slot) slot.append(panel);
}

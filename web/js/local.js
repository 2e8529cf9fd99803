// The local camera and microphone, shared by the pages: asked for once, shown in the device
// check panel, and handed to the call.

import { DeviceCheck, PROBLEMS, openLocalMedia } from "./media.js";
import { $ } from "./ui.js";

export class Local {
  constructor() {
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

/** Move the device check panel into the current screen's slot, if it has one. */
export function placeDevices(screen) {
  const slot = screen && screen.querySelector("[data-device-slot]");
  const panel = $("#devices");
  if (slot && panel.parentElement !== slot) slot.append(panel);
}

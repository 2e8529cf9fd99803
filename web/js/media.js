// Camera and microphone: the local stream, the device check and switching devices.

/** Ask for camera and microphone. Never throws: without permission or devices, the result
 * has `stream: null` (or a stream with only what worked) and `problem` says why. */
export async function openLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, problem: "unsupported" };
  }
  const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } };
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: true, video }), problem: null };
  } catch (error) {
    if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
      return { stream: null, problem: "denied" };
    }
    // One of the two may be missing or busy: try each on its own.
    for (const constraints of [{ audio: true }, { video }]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        return { stream, problem: constraints.audio ? "no_camera" : "no_microphone" };
      } catch {
        /* try the next */
      }
    }
    return { stream: null, problem: error && error.name === "NotFoundError" ? "no_devices" : "failed" };
  }
}

/** The cameras and microphones the browser reports (labels only after permission). */
export async function listDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    return { cameras: [], microphones: [] };
  }
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: devices.filter((d) => d.kind === "videoinput"),
    microphones: devices.filter((d) => d.kind === "audioinput"),
  };
}

/** A new track of `kind` ("audio" | "video") from the device `deviceId`. */
export async function openDevice(kind, deviceId) {
  const constraint = { deviceId: { exact: deviceId } };
  const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraint });
  return stream.getTracks()[0];
}

export const PROBLEMS = {
  denied:
    "You chose not to share your camera and microphone. You can still join: the others will not see or hear you. To change this, allow access in your browser's site settings and reload the page.",
  no_devices: "No camera or microphone was found. You can still join, but the others will not see or hear you.",
  no_camera: "No camera was found (or it is in use by another app). The others will hear you but not see you.",
  no_microphone: "No microphone was found (or it is in use by another app). The others will see you but not hear you.",
  unsupported: "This browser cannot use a camera here. You can still join, but the others will not see or hear you.",
  failed: "Your camera and microphone could not be started. You can still join, but the others will not see or hear you.",
};

/**
 * The device check panel: fills `root` (an element holding [data-devices] and
 * [data-camera-select] / [data-mic-select] selects) and keeps the selects in sync.
 * `onSwitch(kind, track)` is called after the user picks another device.
 */
export class DeviceCheck {
  constructor(root, local, onSwitch) {
    this.root = root;
    this.local = local;
    this.onSwitch = onSwitch;
    this.cameraSelect = root.querySelector("[data-camera-select]");
    this.micSelect = root.querySelector("[data-mic-select]");
    this.cameraSelect.addEventListener("change", () => this.#switch("video", this.cameraSelect.value));
    this.micSelect.addEventListener("change", () => this.#switch("audio", this.micSelect.value));
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener("devicechange", () => this.refresh());
    }
  }

  async refresh() {
    const { cameras, microphones } = await listDevices();
    const stream = this.local.stream;
    const current = (kind) => {
      const track = stream && stream.getTracks().find((t) => t.kind === kind);
      return track ? track.getSettings().deviceId : null;
    };
    fill(this.cameraSelect, cameras, current("video"), "camera");
    fill(this.micSelect, microphones, current("audio"), "microphone");
    const summary = this.root.querySelector("[data-devices]");
    const cam = trackLabel(stream, "video");
    const mic = trackLabel(stream, "audio");
    summary.textContent =
      `Found ${plural(cameras.length, "camera")} and ${plural(microphones.length, "microphone")}. ` +
      (cam ? `Camera in use: ${cam}. ` : "Camera: not in use. ") +
      (mic ? `Microphone in use: ${mic}.` : "Microphone: not in use.");
  }

  async #switch(kind, deviceId) {
    if (!deviceId || !this.local.stream) return;
    try {
      const track = await openDevice(kind, deviceId);
      const stream = this.local.stream;
      for (const old of stream.getTracks().filter((t) => t.kind === kind)) {
        track.enabled = old.enabled; // keep mute / camera-off as they were
        stream.removeTrack(old);
        old.stop();
      }
      stream.addTrack(track);
      this.onSwitch(kind, track);
    } catch {
      /* keep the old device; refresh() below shows what is in use */
    }
    await this.refresh();
  }
}

function trackLabel(stream, kind) {
  const track = stream && stream.getTracks().find((t) => t.kind === kind);
  return track ? track.label || `default ${kind === "video" ? "camera" : "microphone"}` : null;
}

function plural(count, noun) {
  return count === 1 ? `1 ${noun}` : `${count} ${noun}s`;
}

function fill(select, devices, currentId, noun) {
  select.replaceChildren();
  devices.forEach((device, index) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || `${noun} ${index + 1}`;
    option.selected = device.deviceId === currentId;
    select.append(option);
  });
  select.disabled = devices.length < 2 || !currentId;
}

// The call screen shared by the patient page and the console: video tiles, mute, camera off,
// and the mesh behind them.

import { Mesh, roleLabel } from "./mesh.js";
import { $, el, playVideo, videoTile } from "./ui.js";

export class CallView {
  /**
   * grid: the element holding the tiles. controls: a list of {mute, camera} button pairs
   * (the call's and the preview's), kept in step.
   * local: {stream, ready}. onSoundBlocked(): the browser needs a click before playing sound.
   */
  constructor({ signal, local, grid, controls, onSoundBlocked, onPeerChange }) {
    this.signal = signal;
    this.local = local;
    this.grid = grid;
    this.controls = controls;
    this.onSoundBlocked = onSoundBlocked;
    this.onPeerChange = onPeerChange || (() => {});
    this.mesh = null;
    this.tiles = new Map(); // participant id -> {figure, video, state}
    this.selfTile = null;
    for (const pair of controls) {
      pair.mute.addEventListener("click", () => this.toggle("audio"));
      pair.camera.addEventListener("click", () => this.toggle("video"));
    }
  }

  get active() {
    return this.mesh !== null;
  }

  /** Enter the call (again). A resumed participant keeps its mesh and repairs it. */
  enter({ selfId, selfName, iceServers, resumed }) {
    if (this.mesh && this.mesh.selfId === selfId) {
      if (resumed) this.mesh.resumed();
      return;
    }
    this.exit();
    const mesh = new Mesh({ signal: this.signal, selfId, iceServers, local: this.local, ready: this.local.ready });
    if (resumed) mesh.resumed();
    mesh.addEventListener("stream", (event) => this.#stream(event.detail));
    mesh.addEventListener("peer", (event) => this.#peer(event.detail));
    mesh.addEventListener("state", (event) => this.#state(event.detail));
    this.mesh = mesh;
    this.#selfTile(selfName);
    this.syncControls();
    clearInterval(this.watcher);
    this.watcher = setInterval(() => this.#cameras(), 1000);
  }

  /** A remote camera that is off sends black frames (or none): label its tile. */
  #cameras() {
    this.canvas = this.canvas || Object.assign(document.createElement("canvas"), { width: 8, height: 6 });
    const context = this.canvas.getContext("2d", { willReadFrequently: true });
    for (const tile of this.tiles.values()) {
      const { video, figure } = tile;
      const stream = video.srcObject;
      const track = stream && stream.getVideoTracks ? stream.getVideoTracks()[0] : null;
      let dark = !track || track.muted || track.readyState === "ended";
      if (!dark && video.readyState >= 2 && video.videoWidth > 0) {
        context.drawImage(video, 0, 0, 8, 6);
        const pixels = context.getImageData(0, 0, 8, 6).data;
        let brightest = 0;
        for (let i = 0; i < pixels.length; i += 4) brightest = Math.max(brightest, pixels[i] + pixels[i + 1] + pixels[i + 2]);
        dark = brightest < 40;
      } else if (!dark) {
        continue; // not playing yet: "connecting…" says so
      }
      // Twice in a row, so that one dark frame (a scene change) does not flicker the label.
      tile.dark = dark ? (tile.dark || 0) + 1 : 0;
      const off = tile.dark >= 2;
      if ((figure.dataset.camera === "off") !== off) {
        figure.dataset.camera = off ? "off" : "on";
        tile.state.textContent = off ? "camera off" : "";
      }
    }
  }

  exit() {
    clearInterval(this.watcher);
    if (this.mesh) this.mesh.close();
    this.mesh = null;
    for (const { figure } of this.tiles.values()) figure.remove();
    this.tiles.clear();
    if (this.selfTile) this.selfTile.figure.remove();
    this.selfTile = null;
    this.#layout();
  }

  roster(participants) {
    if (this.mesh) this.mesh.roster(participants);
  }

  handle(message) {
    if (this.mesh) this.mesh.handle(message);
  }

  /** Mute / unmute the microphone, or turn the camera off / on. */
  toggle(kind) {
    const tracks = this.local.stream ? this.local.stream.getTracks().filter((t) => t.kind === kind) : [];
    if (!tracks.length) return;
    const enable = !tracks[0].enabled;
    for (const track of tracks) track.enabled = enable;
    this.syncControls();
  }

  syncControls() {
    const stream = this.local.stream;
    const has = (kind) => Boolean(stream && stream.getTracks().some((t) => t.kind === kind));
    const on = (kind) => Boolean(stream && stream.getTracks().some((t) => t.kind === kind && t.enabled));
    for (const { mute, camera } of this.controls) {
      mute.disabled = !has("audio");
      mute.setAttribute("aria-pressed", String(has("audio") && !on("audio")));
      mute.querySelector(".label").textContent = !has("audio") ? "No microphone" : on("audio") ? "Mute" : "Unmute";
      camera.disabled = !has("video");
      camera.setAttribute("aria-pressed", String(has("video") && !on("video")));
      camera.querySelector(".label").textContent = !has("video")
        ? "No camera"
        : on("video")
          ? "Stop camera"
          : "Start camera";
    }
    const previewOff = document.getElementById("preview-off");
    if (previewOff) previewOff.hidden = on("video");
    if (this.selfTile && this.selfTile.video.srcObject !== stream) {
      // The camera was not ready when the call was entered (or was switched).
      this.selfTile.video.srcObject = stream;
      if (stream) playVideo(this.selfTile.video, () => {});
    }
    if (this.selfTile) {
      this.selfTile.state.textContent = [
        !has("audio") ? "no mic" : !on("audio") ? "muted" : "",
        !has("video") ? "no camera" : !on("video") ? "camera off" : "",
      ]
        .filter(Boolean)
        .join(", ");
    }
  }

  async stats() {
    return this.mesh ? this.mesh.stats() : [];
  }

  /** What each remote <video> is doing (for tests and diagnostics). */
  videos() {
    return [...this.tiles.entries()].map(([id, { video }]) => ({
      participant_id: id,
      paused: video.paused,
      muted: video.muted,
      readyState: video.readyState,
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      currentTime: video.currentTime,
    }));
  }

  /** Unmute remote videos after a click (autoplay rules). */
  enableSound() {
    for (const { video } of this.tiles.values()) {
      video.muted = false;
      video.play().catch(() => {});
    }
  }

  #selfTile(name) {
    if (this.selfTile) this.selfTile.figure.remove();
    this.selfTile = videoTile({ id: "self", label: "You", self: true });
    this.selfTile.video.srcObject = this.local.stream;
    this.selfTile.video.setAttribute("aria-label", `Your camera${name ? ` (others see you as ${name})` : ""}`);
    this.grid.append(this.selfTile.figure);
    if (this.local.stream) playVideo(this.selfTile.video, () => {});
    this.#layout();
  }

  #tile(id, name) {
    let tile = this.tiles.get(id);
    if (!tile) {
      tile = videoTile({ id, label: name || "Participant" });
      tile.video.setAttribute("aria-label", `Video of ${name || "participant"}`);
      tile.state.textContent = "connecting…";
      this.tiles.set(id, tile);
      this.grid.insertBefore(tile.figure, this.selfTile ? this.selfTile.figure : null);
      this.#layout();
    }
    return tile;
  }

  #stream({ id, stream, name }) {
    const tile = this.#tile(id, name);
    if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
    playVideo(tile.video, () => this.onSoundBlocked());
  }

  #peer({ id, name, connected, present }) {
    if (!present) {
      const tile = this.tiles.get(id);
      if (tile) tile.figure.remove();
      this.tiles.delete(id);
      this.#layout();
      this.onPeerChange();
      return;
    }
    const tile = this.#tile(id, name);
    tile.figure.querySelector(".tile-name").textContent = name;
    tile.figure.classList.toggle("tile-away", !connected);
    if (!connected) tile.state.textContent = "reconnecting…";
    else if (tile.state.textContent === "reconnecting…") tile.state.textContent = "";
    this.onPeerChange();
  }

  #state({ id, state }) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.figure.dataset.connection = state;
    const text = { new: "connecting…", connecting: "connecting…", connected: "", disconnected: "connection unstable…", failed: "reconnecting…" };
    if (state in text) tile.state.textContent = text[state];
  }

  #layout() {
    const count = this.tiles.size;
    // With one other person our own picture floats in a corner over theirs; with more, it
    // takes a place in the grid so that it covers nobody.
    const pip = count <= 1;
    this.grid.dataset.pip = String(pip);
    this.grid.dataset.count = String(pip ? count : count + (this.selfTile ? 1 : 0));
    const empty = $("[data-call-empty]", this.grid.parentElement);
    if (empty) empty.hidden = count > 0;
  }
}

export { roleLabel, el };

// The call: a full mesh, one RTCPeerConnection per other participant in the roster
// (signalling/PROTOCOL.md §9). Offers, answers and ICE candidates travel over the Signal.
//
// Who sends the offer. In every pair, the participant whose participant_id sorts first
// (plain JavaScript string comparison) makes the offer; the other one waits for it. Both ends
// work this out from the roster alone, so two offers do not cross ("glare") whatever order
// people arrived in. Three exceptions keep calls alive when things go wrong:
//   1. A participant that comes back after losing its connection (welcome.resumed in the call)
//      offers to every peer whose connection is missing or broken, whichever id sorts first.
//   2. The waiting side of a pair offers itself if no offer came within FALLBACK_MS (a peer
//      that follows PROTOCOL.md §9.5, where the newcomer offers, may be waiting for us).
//   3. If offers cross anyway, the participant whose id sorts first ignores the incoming one
//      and the other drops its own and answers.
// Every accepted offer starts a fresh RTCPeerConnection (§9.5 point 5): the peer may have
// reloaded and lost its old one. Trickle ICE: candidates are sent as they are gathered and
// end with `candidate: null`; candidates that arrive before the offer/answer are queued.

const FALLBACK_MS = 4000;

// A short history of call set-up, for diagnostics (window.vestibule.log()). Never holds SDP.
export const history = [];
function note(...parts) {
  const line = `${(performance.now() / 1000).toFixed(2)} ${parts.join(" ")}`;
  history.push(line);
  if (history.length > 300) history.shift();
  console.debug("vestibule:", line);
}

export class Mesh extends EventTarget {
  /** local: {stream} filled in by `ready` (a promise that settles once the camera and
   * microphone were asked for); nothing is negotiated before it settles. */
  constructor({ signal, selfId, iceServers, local, ready }) {
    super();
    this.signal = signal;
    this.selfId = selfId;
    this.iceServers = iceServers || [];
    this.local = local; // { stream: MediaStream | null }
    this.peers = new Map(); // participant id -> Peer
    this.connected = new Map(); // participant id -> last `connected` seen in the roster
    this.names = new Map();
    // Signalling work is done one step at a time, in arrival order, after the media is ready.
    this.chain = Promise.resolve(ready).catch(() => {});
    this.offering = new Set(); // peers with an offer queued but not yet made
    this.fallbacks = new Map(); // peer id -> timer of rule 2
    this.recovering = false;
    this.closed = false;
  }

  /** After our own resume: offer to anyone we no longer have a working connection with. */
  resumed() {
    this.recovering = true;
  }

  /** Apply a roster (the full list of participants in the call). */
  roster(participants) {
    if (this.closed) return;
    note("roster", participants.map((p) => `${p.participant_id}${p.connected ? "" : "(away)"}`).join(","));
    const others = participants.filter((p) => p.participant_id !== this.selfId);
    const present = new Set(others.map((p) => p.participant_id));
    for (const id of [...this.peers.keys()]) {
      if (!present.has(id)) this.#remove(id);
    }
    for (const p of others) {
      const id = p.participant_id;
      this.names.set(id, p.name || roleLabel(p.role));
      const before = this.connected.get(id);
      this.connected.set(id, p.connected);
      this.#emit("peer", { id, name: this.names.get(id), connected: p.connected, present: true });
      if (!p.connected) continue; // keep its media; it will come back or leave the roster
      const peer = this.peers.get(id);
      const healthy = peer && !["failed", "closed"].includes(peer.pc.connectionState);
      const cameBack = before === false && !(peer && peer.pc.connectionState === "connected");
      if (this.recovering && !(peer && peer.pc.connectionState === "connected")) {
        note("recovering: offer to", id);
        this.#queueOffer(id);
      } else if (!healthy || cameBack) {
        note(this.#offers(id) ? "will offer to" : "expects an offer from", id, cameBack ? "(came back)" : "");
        if (this.#offers(id)) this.#queueOffer(id);
        else this.#expectOffer(id);
      }
    }
    this.recovering = false;
    for (const id of [...this.connected.keys()]) if (!present.has(id)) this.connected.delete(id);
  }

  /** Handle an offer, answer or candidate from the server. */
  handle(message) {
    if (this.closed) return;
    this.#queue(async () => {
      if (message.type === "offer") await this.#onOffer(message.from, message.sdp);
      else if (message.type === "answer") await this.#onAnswer(message.from, message.sdp);
      else if (message.type === "candidate") await this.#onCandidate(message.from, message.candidate);
    });
  }

  /** A device was switched: send the new track to everyone. */
  replaceTrack(kind, track) {
    for (const peer of this.peers.values()) {
      for (const sender of peer.pc.getSenders()) {
        if (sender.track && sender.track.kind === kind) sender.replaceTrack(track).catch(() => {});
      }
    }
  }

  close() {
    this.closed = true;
    for (const id of [...this.peers.keys()]) this.#remove(id);
  }

  /** Per peer: connection state and what arrived (for the tests and the UI). */
  async stats() {
    const result = [];
    for (const [id, peer] of this.peers) {
      const entry = {
        participant_id: id,
        name: this.names.get(id) || null,
        connectionState: peer.pc.connectionState,
        iceConnectionState: peer.pc.iceConnectionState,
        framesDecoded: 0,
        framesReceived: 0,
        videoBytesReceived: 0,
        audioBytesReceived: 0,
        framesEncoded: 0,
      };
      try {
        const report = await peer.pc.getStats();
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") {
            entry.framesDecoded += s.framesDecoded || 0;
            entry.framesReceived += s.framesReceived || 0;
            entry.videoBytesReceived += s.bytesReceived || 0;
          } else if (s.type === "inbound-rtp" && s.kind === "audio") {
            entry.audioBytesReceived += s.bytesReceived || 0;
          } else if (s.type === "outbound-rtp" && s.kind === "video") {
            entry.framesEncoded += s.framesEncoded || 0;
          }
        });
      } catch {
        /* closed meanwhile */
      }
      result.push(entry);
    }
    return result;
  }

  #offers(id) {
    return this.selfId < id;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #queue(work) {
    this.chain = this.chain.then(work).catch((error) => console.warn("vestibule: call set-up", error));
    return this.chain;
  }

  #queueOffer(id) {
    if (this.offering.has(id)) return;
    this.offering.add(id);
    this.#queue(() => {
      this.offering.delete(id);
      return this.#offer(id);
    });
  }

  #expectOffer(id) {
    if (this.fallbacks.has(id)) return;
    const timer = setTimeout(() => {
      this.fallbacks.delete(id);
      const peer = this.peers.get(id);
      const state = peer && peer.pc.connectionState;
      const stuck = !peer || state === "failed" || state === "closed" || (state === "new" && !peer.remoteSet);
      if (!this.closed && this.connected.get(id) && stuck) {
        note("no offer came: offer to", id, "ourselves");
        this.#queueOffer(id);
      }
    }, FALLBACK_MS);
    this.fallbacks.set(id, timer);
  }

  #fresh(id) {
    this.#remove(id, { keepTile: true });
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const peer = { id, pc, pending: [], remoteSet: false, makingOffer: false, stream: new MediaStream() };
    this.peers.set(id, peer);
    const stream = this.local.stream;
    if (stream) for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.onicecandidate = (event) => {
      if (this.peers.get(id) !== peer) return;
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      this.signal.send({ type: "candidate", to: id, candidate });
    };
    pc.ontrack = (event) => {
      if (this.peers.get(id) !== peer) return;
      peer.stream.addTrack(event.track);
      this.#emit("stream", { id, stream: peer.stream, name: this.names.get(id) });
    };
    pc.onconnectionstatechange = () => {
      if (this.peers.get(id) !== peer) return;
      note("connection", id, pc.connectionState, "ice", pc.iceConnectionState);
      this.#emit("state", { id, state: pc.connectionState });
      if (pc.connectionState === "failed" && this.connected.get(id)) {
        if (this.#offers(id)) this.#queueOffer(id);
        else this.#expectOffer(id);
      }
    };
    return peer;
  }

  async #offer(id) {
    if (this.closed || !this.connected.get(id)) return;
    const peer = this.#fresh(id);
    const { pc } = peer;
    const kinds = new Set(pc.getSenders().map((s) => s.track && s.track.kind));
    // Without a camera or microphone, still ask to receive the other's.
    for (const kind of ["audio", "video"]) {
      if (!kinds.has(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    peer.makingOffer = true;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const sent = this.signal.send({ type: "offer", to: id, sdp: pc.localDescription.sdp });
      note("offer sent to", id, sent ? "" : "(not connected)");
    } finally {
      peer.makingOffer = false;
    }
  }

  async #onOffer(from, sdp) {
    const existing = this.peers.get(from);
    const crossing = existing && (existing.makingOffer || existing.pc.signalingState === "have-local-offer");
    if (crossing && this.selfId < from) {
      note("offer from", from, "ignored: ours crossed it and wins");
      return; // rule 3: they will answer ours
    }
    note("offer from", from, crossing ? "(crossed ours: answering theirs)" : "");
    const peer = this.#fresh(from);
    await peer.pc.setRemoteDescription({ type: "offer", sdp });
    peer.remoteSet = true;
    await this.#flush(peer);
    await peer.pc.setLocalDescription(await peer.pc.createAnswer());
    this.signal.send({ type: "answer", to: from, sdp: peer.pc.localDescription.sdp });
    note("answer sent to", from);
  }

  async #onAnswer(from, sdp) {
    const peer = this.peers.get(from);
    if (!peer || peer.pc.signalingState !== "have-local-offer") {
      note("stale answer from", from, "ignored");
      return;
    }
    note("answer from", from);
    await peer.pc.setRemoteDescription({ type: "answer", sdp });
    peer.remoteSet = true;
    await this.#flush(peer);
  }

  async #onCandidate(from, candidate) {
    const peer = this.peers.get(from);
    if (!peer) return;
    if (!peer.remoteSet) peer.pending.push(candidate);
    else await addCandidate(peer.pc, candidate);
  }

  async #flush(peer) {
    const pending = peer.pending.splice(0);
    for (const candidate of pending) await addCandidate(peer.pc, candidate);
  }

  #remove(id, { keepTile = false } = {}) {
    const peer = this.peers.get(id);
    clearTimeout(this.fallbacks.get(id));
    this.fallbacks.delete(id);
    if (peer) {
      peer.pc.onicecandidate = peer.pc.ontrack = peer.pc.onconnectionstatechange = null;
      peer.pc.close();
      this.peers.delete(id);
    }
    if (!keepTile) this.#emit("peer", { id, present: false });
  }
}

async function addCandidate(pc, candidate) {
  try {
    // null is the end of candidates (§9.3); addIceCandidate() without an argument says so.
    if (candidate === null) await pc.addIceCandidate();
    else await pc.addIceCandidate(candidate);
  } catch (error) {
    console.debug("vestibule: candidate not added", error);
  }
}

export function roleLabel(role) {
  return { host: "Clinician", patient: "Patient", guest: "Guest" }[role] || "Participant";
}

// The signalling connection (signalling/PROTOCOL.md §4 and §10): hello first, welcome, a ping
// every heartbeat_interval, and automatic reconnection with the resume token.
//
// Events (all CustomEvent, payload in `detail`):
//   "state"         {state: "connecting" | "open" | "reconnecting" | "offline", attempt, delay}
//   "welcome"       the welcome message
//   "message"       every other server message except pong; the lists come as deltas
//                   (hello feature "deltas", §6.8) and are given to the page whole, as
//                   waiting_list and roster messages
//   "name_required" {code, message}: the hello needs a display name; call start(name)
//   "refused"       {code, message, details}: the link cannot be used (do not retry)
//   "closed"        {reason: "left" | "denied" | "replaced" | "gave_up"}

const RESUME_REFUSALS = new Set(["invalid_token", "token_expired", "invalid_resume"]);
const NAME_ERRORS = new Set(["name_required", "invalid_name"]);

// Reconnection backoff: 0.5 s, 1 s, 2 s, ... capped at 10 s, with jitter; after this many
// failed attempts in a row (about a minute, longer than the 30 s resume grace) give up and
// let the user retry by hand.
export const BACKOFF = { firstMs: 500, maxMs: 10000, attempts: 10 };
const UNAVAILABLE_MIN_MS = 3000; // close 1013: "wait a few seconds" (§4.1)
const LIST_FIELDS = { waiting_list: "entries", roster: "participants" };

/** The page's copy of the lists the server sends as deltas (§6.8). take(message) returns
 * the whole list after a list or its delta, or null for a delta that does not follow on
 * from the copy (a gap: ask again with resync). */
export class Lists {
  constructor() {
    this.lists = new Map(); // kind -> {version, entries: Map(participant_id -> entry)}
  }

  take(message) {
    const whole = LIST_FIELDS[message.type];
    if (whole) {
      const entries = new Map(message[whole].map((e) => [e.participant_id, e]));
      this.lists.set(message.type, { version: message.version ?? 0, entries });
      return message;
    }
    const kind = message.type.replace(/_delta$/, "");
    const list = this.lists.get(kind);
    if (!list || message.version !== list.version + 1) {
      this.lists.delete(kind);
      return null;
    }
    for (const id of message.removed) list.entries.delete(id);
    for (const e of [...message.changed, ...message.added]) list.entries.set(e.participant_id, e);
    list.version = message.version;
    let items = [...list.entries.values()];
    if (kind === "waiting_list") items = items.map((e, i) => ({ ...e, position: i + 1 }));
    return { type: kind, [LIST_FIELDS[kind]]: items, version: message.version };
  }
}

export class Signal extends EventTarget {
  /** room: from the path; token: the join token; key: sessionStorage key prefix; features:
   * what the page can do, sent in the hello (§5.1: "join_now" for a Join now button). */
  constructor({ room, token, storageKey, features = [] }) {
    super();
    this.room = room;
    this.token = token;
    this.storageKey = storageKey;
    this.features = features.includes("deltas") ? features : [...features, "deltas"];
    this.lists = new Lists();
    this.name = null;
    this.ws = null;
    this.welcome = null;
    this.stopped = true;
    this.attempt = 0;
    this.retryTimer = null;
    this.heartbeat = null;
    this.lastHeard = 0;
    this.lastError = null;
    this.withoutResume = false;
    this.nextId = 1;
    window.addEventListener("online", () => {
      // The network is back: skip the rest of the backoff wait.
      if (this.retryTimer !== null) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.#open();
      }
    });
  }

  get resumeToken() {
    return sessionStorage.getItem(this.storageKey + ":resume");
  }

  set resumeToken(value) {
    if (value) sessionStorage.setItem(this.storageKey + ":resume", value);
    else sessionStorage.removeItem(this.storageKey + ":resume");
  }

  get connected() {
    return this.welcome !== null && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Connect (again). `name` is sent in the hello when given (guests on a general link). */
  start(name) {
    if (name !== undefined) this.name = name;
    this.stopped = false;
    this.attempt = 0;
    this.withoutResume = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.#open();
  }

  /** Send a message; returns its id, or null when there is no open connection. */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.welcome === null) return null;
    const id = `c${this.nextId++}`;
    this.ws.send(JSON.stringify({ ...message, id }));
    return id;
  }

  /** Leave the room for good: the server answers with close 1000. */
  leave() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.welcome !== null) {
      const ws = this.ws;
      ws.send(JSON.stringify({ type: "leave", id: `c${this.nextId++}` }));
      // The server closes with 1000; do not wait for ever if the network is gone.
      setTimeout(() => {
        if (ws === this.ws) {
          this.#detach();
          this.#emit("closed", { reason: "left" });
        }
      }, 3000);
    } else {
      this.#detach();
      this.#emit("closed", { reason: "left" });
    }
  }

  /** Drop the socket as a network failure would (used by tests and the watchdog). */
  drop() {
    if (!this.ws) return;
    this.#lost(this.ws);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  #open() {
    this.#detach();
    this.welcome = null;
    this.lastError = null;
    this.#emit("state", { state: this.attempt === 0 ? "connecting" : "reconnecting", attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.#url());
    } catch {
      this.#retry(0);
      return;
    }
    this.ws = ws;
    const resume = this.withoutResume ? null : this.resumeToken;
    ws.onopen = () => {
      const hello = { type: "hello", id: "hello", room: this.room, token: this.token, protocol: 1 };
      if (resume) hello.resume = resume;
      if (this.name) hello.name = this.name;
      if (this.features.length) hello.features = this.features;
      ws.send(JSON.stringify(hello));
      ws.sentResume = Boolean(resume);
    };
    ws.onmessage = (event) => this.#receive(ws, event.data);
    ws.onclose = (event) => this.#closed(ws, event.code);
  }

  #detach() {
    this.#stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      try {
        ws.close(4000, "client reconnecting");
      } catch {
        /* already closing */
      }
    }
  }

  #receive(ws, data) {
    if (ws !== this.ws || typeof data !== "string") return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") return;
    this.lastHeard = performance.now();
    if (message.type === "welcome") {
      this.lists = new Lists(); // a new connection starts its lists afresh
      this.welcome = message;
      this.attempt = 0;
      this.withoutResume = false;
      this.resumeToken = message.resume_token;
      this.#startHeartbeat(message.heartbeat_interval);
      this.#emit("state", { state: "open" });
      this.#emit("welcome", message);
      return;
    }
    if (message.type === "pong") return;
    if (message.type === "error" && this.welcome === null) {
      this.lastError = message;
      if (NAME_ERRORS.has(message.code)) {
        // The hello deadline keeps running while the guest types: close now and send a
        // fresh hello (with the name) on a new connection.
        this.stopped = true;
        this.#detach();
        this.#emit("name_required", message);
      } else if (message.code === "room_busy") {
        setTimeout(() => ws === this.ws && ws.onopen && ws.onopen(), 200 + Math.random() * 300);
      }
      return;
    }
    if (message.type === "waiting_list_delta" || message.type === "roster_delta") {
      message = this.lists.take(message);
      if (message === null) {
        ws.send(JSON.stringify({ type: "resync" })); // a gap: the lists again, whole
        return;
      }
    } else if (LIST_FIELDS[message.type]) {
      this.lists.take(message);
    }
    this.#emit("message", message);
  }

  #closed(ws, code) {
    if (ws !== this.ws) return;
    this.#stopHeartbeat();
    this.ws = null;
    const welcomed = this.welcome !== null;
    this.welcome = null;
    const error = welcomed ? null : this.lastError;
    if (this.stopped || code === 1000) {
      this.stopped = true;
      this.#emit("closed", { reason: "left" });
      return;
    }
    if (code === 4403) return this.#stop("denied");
    if (code === 4409) return this.#stop("replaced");
    if (code === 4401 || code === 4410) {
      const refusal = error ?? { code: code === 4410 ? "room_closed" : "invalid_token", details: {} };
      // §10: a refused resume may be the resume token's fault: try once without it.
      if (ws.sentResume && RESUME_REFUSALS.has(refusal.code) && !this.withoutResume) {
        this.withoutResume = true;
        this.resumeToken = null;
        this.#open();
        return;
      }
      this.stopped = true;
      this.#emit("refused", refusal);
      return;
    }
    // Anything else is a lost connection (1006, 1011, 1013, 4408, 4412, 4429, ...).
    this.#retry(code === 1013 ? UNAVAILABLE_MIN_MS : 0);
  }

  #stop(reason) {
    this.stopped = true;
    this.#emit("closed", { reason });
  }

  #lost(ws) {
    if (ws !== this.ws) return;
    this.#detach();
    this.welcome = null;
    this.#retry(0);
  }

  #retry(minimumMs) {
    if (this.stopped) return;
    this.attempt += 1;
    if (this.attempt > BACKOFF.attempts) {
      this.#emit("state", { state: "offline", attempt: this.attempt });
      this.#stop("gave_up");
      return;
    }
    const base = Math.min(BACKOFF.maxMs, BACKOFF.firstMs * 2 ** (this.attempt - 1));
    const delay = Math.max(minimumMs, Math.round(base * (0.5 + Math.random() * 0.5)));
    this.#emit("state", { state: "reconnecting", attempt: this.attempt, delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.#open();
    }, delay);
  }

  #startHeartbeat(intervalSeconds) {
    this.#stopHeartbeat();
    const interval = Math.max(1, Number(intervalSeconds) || 20) * 1000;
    const ws = this.ws;
    this.heartbeat = setInterval(() => {
      if (ws !== this.ws) return;
      // No frame at all (not even a pong) for two intervals: the connection is dead even if
      // the browser has not noticed (§4.4).
      if (performance.now() - this.lastHeard > 2 * interval + 2000) {
        this.#lost(ws);
        return;
      }
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
    }, interval);
  }

  #stopHeartbeat() {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
}

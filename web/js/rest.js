// Calls to the REST API (/api/v1, see its openapi.json), and the one place that knows how
// the console pages authenticate:
// - the clinician's console signs in with the clinician's own link (`signIn`: the link's
//   token goes in a POST body, never a URL) and keeps the console session it gets, for this
//   tab only (sessionStorage), until it expires; `consoleApi` sends it;
// - the availability page uses the clinic's API key (Authorization: Bearer vk_...), kept
//   the same way; `api` sends it.
// The booking page calls the public operations with `publicApi`: no key, no cookies.

const KEY = "vestibule:api-key";
const SESSION = "vestibule:console-session:";

/** The console session of `room` kept in this tab, if it has not expired. */
export function consoleSession(room) {
  try {
    const kept = JSON.parse(sessionStorage.getItem(SESSION + room) || "null");
    return kept && Date.parse(kept.expires_at) > Date.now() + 60000 ? kept : null;
  } catch {
    return null;
  }
}

/** Sign in with a clinician's link token: the console session (also kept for the tab), or
 * an Error with `status` and `code` (NO_CLINICIAN: a room without a clinician's list). */
export async function signIn(room, token) {
  const kept = consoleSession(room);
  if (kept) return kept;
  const session = await request("POST", "/console/sessions", { token }, {});
  sessionStorage.setItem(SESSION + session.room_id, JSON.stringify(session));
  if (session.room_id !== room) sessionStorage.setItem(SESSION + room, JSON.stringify(session));
  return session;
}

/** A console operation with the session of `room`. */
export function consoleApi(room, method, path, body = undefined) {
  const session = consoleSession(room);
  return request(method, path, body, { Authorization: `Bearer ${session ? session.token : ""}` });
}

/** The console's live events (GET /console/events, server-sent events over fetch: an
 * EventSource cannot send the session). Calls onEvent(kind, data) until stop() is called;
 * reconnects after a break. */
export function consoleEvents(room, onEvent) {
  let stopped = false;
  let controller = null;
  (async () => {
    let delay = 1000;
    while (!stopped) {
      controller = new AbortController();
      try {
        const session = consoleSession(room);
        const response = await fetch("/api/v1/console/events", {
          headers: { Authorization: `Bearer ${session ? session.token : ""}`, Accept: "text/event-stream" },
          credentials: "omit",
          cache: "no-store",
          signal: controller.signal,
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        delay = 1000;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) !== -1) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const kind = /^event: (.*)$/m.exec(block);
            const data = /^data: (.*)$/m.exec(block);
            if (kind) onEvent(kind[1], data ? JSON.parse(data[1]) : {});
          }
        }
      } catch {
        /* a break: try again below */
      }
      if (stopped) break;
      onEvent("lost", {});
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  })();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** A call with the API key: resolves to the envelope's `data`, or throws an Error with
 * `status`, `code` and `details` from the envelope's `error`. */
export function api(method, path, body = undefined) {
  return request(method, path, body, { Authorization: `Bearer ${apiKey()}` });
}

/** A call to a public operation (the booking page's): no credentials at all. Resolves to
 * the whole envelope ({data, meta}). */
export async function publicApi(method, path, body = undefined) {
  return request(method, path, body, {}, { envelope: true });
}

async function request(method, path, body, headers, { envelope = false } = {}) {
  const all = { Accept: "application/json", ...headers };
  if (body !== undefined) {
    all["Content-Type"] = "application/json";
    if (headers.Authorization) {
      all["Idempotency-Key"] = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
    }
  }
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers: all,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const problem = payload && payload.error;
    const error = new Error((problem && problem.message) || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = problem ? problem.code : null;
    error.details = problem ? problem.details : {};
    throw error;
  }
  if (envelope) return payload;
  return payload ? payload.data : null;
}

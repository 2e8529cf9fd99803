// Calls to the REST API (/api/v1, see its openapi.json), and the one place that knows how
// the console pages authenticate: with the clinic's API key (Authorization: Bearer vk_...),
// kept in sessionStorage (this tab only, gone when it closes). When clinicians sign in
// instead, this module changes and its callers do not.
//
// The booking page calls the public operations with `publicApi`: no key, no cookies.

const KEY = "vestibule:api-key";

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

// Join links carry the token in the URL fragment (after "#"), which browsers never send to a
// server. The page reads it once, keeps it in sessionStorage (this tab only, so a reload
// still works) and removes it from the address bar, so it does not end up in screenshots,
// bookmarks or screen shares.
//
// Fragment scheme (both pages):   #<token>[&patient=<URL-encoded patient join link>]
// The token is everything before the first "&"; what follows is read as URL parameters.
// Only the console uses `patient` (for "Copy link").

/** {room, token, params, storageKey} for a page at /<kind>/<room>. */
export function readLink(kind) {
  const parts = location.pathname.split("/").filter(Boolean);
  let room = "";
  try {
    room = parts.length >= 2 ? decodeURIComponent(parts[1]) : "";
  } catch {
    room = "";
  }
  const storageKey = `vestibule:${kind}:${room}`;
  const fragment = location.hash.replace(/^#/, "");
  let token = null;
  let params = new URLSearchParams();
  if (fragment) {
    const cut = fragment.indexOf("&");
    token = cut === -1 ? fragment : fragment.slice(0, cut);
    params = new URLSearchParams(cut === -1 ? "" : fragment.slice(cut + 1));
    try {
      token = decodeURIComponent(token);
    } catch {
      /* keep it as it is */
    }
    if (token) {
      if (sessionStorage.getItem(storageKey + ":token") !== token) {
        // Another link for this room: the old resume token belongs to someone else.
        sessionStorage.removeItem(storageKey + ":resume");
      }
      sessionStorage.setItem(storageKey + ":token", token);
      const saved = Object.fromEntries(params);
      sessionStorage.setItem(storageKey + ":params", JSON.stringify(saved));
    }
    history.replaceState(history.state, "", location.pathname);
  }
  if (!token) {
    token = sessionStorage.getItem(storageKey + ":token");
    try {
      params = new URLSearchParams(JSON.parse(sessionStorage.getItem(storageKey + ":params") || "{}"));
    } catch {
      params = new URLSearchParams();
    }
  }
  return { room, token: token || null, params, storageKey };
}

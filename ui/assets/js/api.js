// Calls to the collector. The pages use /ui/api/v1/…, which the collector
// answers as /v1/… with the session's token (the session cookie is
// HttpOnly: scripts never see it). Changes carry the session's CSRF value.

export class APIError extends Error {
  constructor(status, body, path) {
    const msg = body && body.error ? body.error : "HTTP " + status;
    super(msg);
    this.status = status;
    this.body = body || {};
    this.path = path;
  }
}

let session = null;
const listeners = new Set();

export function currentSession() {
  return session;
}

export function onSessionChange(fn) {
  listeners.add(fn);
}

function setSession(s) {
  session = s;
  for (const fn of listeners) fn(s);
}

export function isAdmin() {
  return session && session.role === "admin";
}

async function parse(res, path) {
  const ct = res.headers.get("Content-Type") || "";
  let body = null;
  if (res.status !== 204) {
    if (ct.includes("json")) {
      try {
        body = await res.json();
      } catch (e) {
        body = null;
      }
    } else {
      body = await res.text();
    }
  }
  if (!res.ok) {
    const err = new APIError(res.status, typeof body === "object" ? body : { error: body || res.statusText }, path);
    if (res.status === 401 && path.startsWith("/ui/api/")) {
      const expired = err.body && err.body.expired;
      setSession(null);
      window.dispatchEvent(new CustomEvent("tg:signedout", { detail: { expired } }));
    }
    throw err;
  }
  return { body, headers: res.headers, status: res.status };
}

function url(path, params) {
  const u = new URL(path.startsWith("/ui/") ? path : "/ui/api" + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u.pathname + u.search;
}

// get reads an API path (/v1/…). background marks automatic refreshes,
// which do not keep an idle session alive.
export async function get(path, params, opts = {}) {
  const headers = { Accept: "application/json" };
  if (opts.background) headers["X-Trailguard-Background"] = "1";
  const res = await fetch(url(path, params), { headers, credentials: "same-origin", signal: opts.signal, cache: "no-store" });
  const r = await parse(res, url(path));
  return opts.full ? r : r.body;
}

// send changes something: method, API path, JSON body.
export async function send(method, path, body, opts = {}) {
  const headers = { Accept: "application/json", "X-CSRF-Token": session ? session.csrf : "" };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(url(path), { method, headers, body: payload, credentials: "same-origin", signal: opts.signal });
  return (await parse(res, url(path))).body;
}

// loadSession asks who is signed in (null if nobody).
export async function loadSession() {
  try {
    const res = await fetch("/ui/api/session", { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
    if (!res.ok) {
      setSession(null);
      return null;
    }
    setSession(await res.json());
  } catch (e) {
    setSession(null);
  }
  return session;
}

export async function signIn(token) {
  const res = await fetch("/ui/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    body = null;
  }
  if (!res.ok) {
    const err = new APIError(res.status, body, "/ui/api/session");
    err.retryAfter = res.headers.get("Retry-After");
    throw err;
  }
  setSession(body);
  return body;
}

export async function signOut() {
  await fetch("/ui/api/session", {
    method: "DELETE",
    headers: { "X-CSRF-Token": session ? session.csrf : "" },
    credentials: "same-origin",
  });
  setSession(null);
}

// list accepts a bare array or an object holding one under any of names.
export function list(body, ...names) {
  if (Array.isArray(body)) return body;
  if (body && typeof body === "object") {
    for (const n of names) if (Array.isArray(body[n])) return body[n];
  }
  return [];
}

// optional reads a path that a collector may not serve yet (404/405): it
// answers {missing: true} instead of throwing.
export async function optional(path, params, opts) {
  try {
    return { body: await get(path, params, opts) };
  } catch (e) {
    if (e instanceof APIError && (e.status === 404 || e.status === 405) && !(e.body && e.body.parameter)) {
      return { missing: true, error: e };
    }
    throw e;
  }
}

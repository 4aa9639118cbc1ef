// The console's only way to the head-end: the public JSON API.

export class APIError extends Error {
  constructor(status, body) {
    const e = body?.error || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_" + status;
    this.field = e.field;
  }
}

// NetworkError means the request may or may not have reached the server.
export class NetworkError extends Error {
  constructor(cause) {
    super("The head-end did not answer (network error). Nothing is lost: retry.");
    this.cause = cause;
  }
}

const listeners = new Set();

// onAuthLost registers a callback for a lost session or a forced password change.
export function onAuthLost(fn) { listeners.add(fn); }

// inFlight counts requests under way; the page is aria-busy while any is,
// so assistive technology (and the browser tests) know it is still loading.
let inFlight = 0;

function busy(delta) {
  inFlight += delta;
  document.getElementById("main")?.setAttribute("aria-busy", String(inFlight > 0));
}

export async function call(method, path, body, headers = {}) {
  busy(+1);
  try {
    return await send(method, path, body, headers);
  } finally {
    busy(-1);
  }
}

async function send(method, path, body, headers) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET" && method !== "HEAD") {
    // Cookie-authenticated writes must prove they come from the console.
    init.headers["X-Sluice-Console"] = "1";
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new NetworkError(e);
  }
  let data = null;
  const text = await res.text().catch(() => "");
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if ((res.status === 401 && path !== "/auth/login") || err.code === "password_change_required") {
      for (const fn of listeners) fn(err);
    }
    throw err;
  }
  return data;
}

export const get = (p) => call("GET", p);
export const post = (p, b, hd) => call("POST", p, b, hd);
export const patch = (p, b) => call("PATCH", p, b);
export const put = (p, b) => call("PUT", p, b);
export const del = (p) => call("DELETE", p);

export const q = encodeURIComponent;

// Capabilities come from the OpenAPI document: which routes this head-end
// has (others are being added release by release) and which roles may call
// them (x-roles). Navigation and pages use it so that they show only what
// the operator can do and degrade to "not available yet" otherwise.
let spec = null;

export async function loadSpec() {
  let doc;
  try {
    doc = (await get("/openapi.json")) || { paths: {} };
  } catch {
    doc = { paths: {} };
  }
  // The document names paths from the root (/api/v1/...); the console
  // names them under the API prefix, as it calls them.
  const paths = {};
  for (const [p, ops] of Object.entries(doc.paths || {})) paths[p.replace(/^\/api\/v1(?=\/)/, "")] = ops;
  spec = { ...doc, paths };
  return spec;
}

function op(method, path) {
  return spec?.paths?.[path]?.[method.toLowerCase()];
}

// has reports whether the head-end serves method path (an OpenAPI path
// template such as /meters/{number}/tokens).
export function has(method, path) { return !!op(method, path); }

// can reports whether role may call method path.
export function can(role, method, path) {
  const o = op(method, path);
  if (!o) return false;
  const roles = o["x-roles"];
  return !roles || roles.includes(role);
}

// find returns the first path template that matches re and has method.
export function find(method, re) {
  for (const p of Object.keys(spec?.paths || {}).sort()) {
    if (re.test(p) && op(method, p)) return p;
  }
  return null;
}

// fill substitutes {params} in a path template.
export function fill(template, params) {
  return template.replace(/\{([a-z_]+)\}/g, (_, k) => encodeURIComponent(params[k] ?? Object.values(params)[0]));
}

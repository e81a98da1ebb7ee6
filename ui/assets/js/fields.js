// Field names for suggestions and column pickers: the fields the index
// answers from its own columns first (fast), then the ECS fields trailguard
// events carry, then any field seen in the results on screen.

export const INDEXED = [
  "@timestamp", "event.action", "event.outcome", "event.kind", "event.dataset", "event.category",
  "http.request.method", "http.response.status_code", "url.path", "source.ip", "client.ip",
  "user.id", "user.name", "user_agent.original", "service.name", "host.name", "event.id", "http.request.id",
];

export const COMMON = [
  "event.type", "event.reason", "event.duration", "event.severity", "event.risk_score", "message",
  "url.original", "url.query", "url.domain", "http.version", "http.request.body.bytes", "http.response.body.bytes",
  "http.request.referrer", "source.port", "destination.ip", "trace.id", "span.id", "transaction.id",
  "user.roles", "user.target.name", "user.target.id", "service.version", "service.environment",
  "log.level", "error.message", "rule.id", "rule.name", "rule.ruleset", "threat.technique.id", "threat.tactic.name",
  "trailguard.alert.count", "trailguard.alert.rate", "trailguard.alert.baseline",
];

// Values worth offering after "field:" for a few fields.
export const VALUES = {
  "event.outcome": ["success", "failure", "unknown"],
  "event.kind": ["event", "alert"],
  "event.action": ["http_request", "authn_login_success", "authn_login_fail", "authz_fail", "sensitive_read", "user_role_change",
    "excess_rate_limit_exceeded", "malicious_sqli", "malicious_attack_tool", "session_created", "session_logout", "session_expired"],
  "event.category": ["web", "authentication", "iam", "configuration", "intrusion_detection"],
  "http.request.method": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
  "http.response.status_code": ["200", "201", "204", "301", "302", "400", "401", "403", "404", "429", "500", "502", "503"],
};

// flatten lists the dotted field names of an event and their values.
export function flatten(obj, prefix = "", out = new Map()) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    if (prefix) out.set(prefix, obj);
    return out;
  }
  for (const [k, v] of Object.entries(obj)) {
    const name = prefix ? prefix + "." + k : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v, name, out);
    else out.set(name, v);
  }
  return out;
}

// valueOf reads a dotted field from an event (nested or dotted keys).
export function valueOf(ev, field) {
  if (!ev || typeof ev !== "object") return undefined;
  if (field in ev) return ev[field];
  const parts = field.split(".");
  let cur = ev;
  for (let i = 0; i < parts.length; i++) {
    if (cur === null || typeof cur !== "object") return undefined;
    const rest = parts.slice(i).join(".");
    if (rest in cur) return cur[rest];
    cur = cur[parts[i]];
  }
  return cur;
}

export function show(v) {
  if (v === undefined || v === null) return "";
  if (Array.isArray(v)) return v.map(show).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// quote makes a query value literal.
export function quote(v) {
  return '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

// term is field:"value" (numbers bare).
export function term(field, v) {
  if (typeof v === "number") return field + ":" + v;
  return field + ":" + quote(v);
}

// DOM building without markup: every value becomes a text node or an
// attribute set through the DOM, never HTML parsed from a string. Logged
// values are attacker-controlled (user agents, paths, user names), so this
// module is the only way pages create elements, and it refuses what could
// turn data into code: event-handler attributes, style attributes, and
// links that do not lead back into the UI.

const SVG_NS = "http://www.w3.org/2000/svg";

// Attributes that may never come through attrs (handlers go in `on`).
function forbidden(name) {
  const n = name.toLowerCase();
  return n.startsWith("on") || n === "style" || n === "srcdoc" || n === "formaction" || n === "action";
}

// safeHref allows only the UI's own absolute paths, fragments and blob:
// downloads we made ourselves: never javascript:, data: or another site.
export function safeHref(v) {
  const s = String(v);
  if (s.startsWith("#")) return s;
  if (s.startsWith("/ui/") && !s.startsWith("//")) return s;
  if (s.startsWith("blob:" + location.origin + "/")) return s;
  return null;
}

function applyAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      continue;
    }
    if (k === "class") {
      const list = Array.isArray(v) ? v.filter(Boolean) : String(v).split(/\s+/).filter(Boolean);
      for (const c of list) el.classList.add(c);
      continue;
    }
    if (k === "dataset") {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      continue;
    }
    if (k === "value" && "value" in el) {
      el.value = String(v);
      continue;
    }
    if (k === "checked" || k === "disabled" || k === "selected" || k === "hidden") {
      el[k] = Boolean(v);
      continue;
    }
    if (forbidden(k)) throw new Error("dom: attribute " + k + " is not allowed");
    if (k === "href" || k === "src" || k === "xlink:href") {
      const safe = safeHref(v);
      if (safe === null) throw new Error("dom: refusing link " + JSON.stringify(String(v).slice(0, 80)));
      el.setAttribute(k, safe);
      continue;
    }
    el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// h builds an HTML element: h("a", {href: "/ui/search", class: "x"}, "text", child…).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

// text is a text node (for clarity where a node is needed).
export function text(v) {
  return document.createTextNode(String(v));
}

// clear removes an element's children.
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// replace puts children in place of an element's content.
export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// link is an in-UI link built from a path and query parameters, so that a
// logged value only ever lands in a query string, encoded.
export function link(path, params, ...children) {
  return h("a", { href: uiURL(path, params) }, ...children);
}

export function uiURL(path, params) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u.pathname + u.search + u.hash;
}

// Status blocks: what the page says while loading, when empty, on errors.
export function loading(what) {
  return h("p", { class: "state loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), "Loading " + what + "…");
}

export function empty(msg) {
  return h("p", { class: "state empty" }, msg);
}

export function errorBox(err, retry) {
  const msg = err && err.message ? err.message : String(err);
  return h("div", { class: "state error", role: "alert" },
    h("strong", {}, "Error: "), msg,
    retry ? h("button", { type: "button", class: "link", on: { click: retry } }, "Retry") : null);
}

// fmtNum formats a count with thousands separators.
export function fmtNum(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
}

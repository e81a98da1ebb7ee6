// Time ranges as the URL carries them: from=24h (back from now) or an RFC
// 3339 time, to= empty (now) or an RFC 3339 time, exactly as the API takes
// them, so a shared URL asks the collector the same question.

import { h } from "./dom.js";

export const PRESETS = [
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["168h", "Last 7 days"],
  ["720h", "Last 30 days"],
];

const UNITS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

// parseDuration reads 90s, 15m, 24h, 1h30m, 7d.
export function parseDuration(s) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
  let total = 0;
  let used = 0;
  let m;
  while ((m = re.exec(s)) !== null) {
    total += parseFloat(m[1]) * (m[2] === "ms" ? 1 : UNITS[m[2]]);
    used += m[0].length;
  }
  return used === s.length && used > 0 ? total : NaN;
}

// Range is the resolved time range of a page.
export class Range {
  constructor(from, to) {
    this.from = from || "24h"; // as in the URL
    this.to = to || "";
  }
  static fromParams(p, def = "24h") {
    return new Range(p.get("from") || def, p.get("to") || "");
  }
  // bounds resolves the range against now: [Date, Date].
  bounds(now = Date.now()) {
    const end = this.to ? Date.parse(this.to) : now;
    let start;
    const d = parseDuration(this.from);
    if (!Number.isNaN(d)) start = end - d;
    else start = Date.parse(this.from);
    if (this.to && !Number.isNaN(d)) start = now - d; // "from=1h&to=T": from is back from now, as the API reads it
    return [new Date(start), new Date(end)];
  }
  valid() {
    const [a, b] = this.bounds();
    return !Number.isNaN(a.getTime()) && !Number.isNaN(b.getTime()) && b > a;
  }
  // params for the API (from, to).
  params() {
    const p = { from: this.from };
    if (this.to) p.to = this.to;
    return p;
  }
  // absolute params: both ends fixed now (for requests that must agree).
  absolute(now = Date.now()) {
    const [a, b] = this.bounds(now);
    return { from: a.toISOString(), to: b.toISOString() };
  }
  label() {
    const p = PRESETS.find(([v]) => v === this.from && !this.to);
    if (p) return p[1];
    const [a, b] = this.bounds();
    return fmtTime(a) + " → " + (this.to ? fmtTime(b) : "now");
  }
  isRelative() {
    return !this.to && !Number.isNaN(parseDuration(this.from));
  }
}

// fmtTime shows a time in UTC, to the second: audit trails are read in one
// time zone, the one the events are stored in.
export function fmtTime(d, withMs) {
  if (!(d instanceof Date)) d = new Date(d);
  if (Number.isNaN(d.getTime())) return "–";
  const iso = d.toISOString();
  return iso.slice(0, 10) + " " + iso.slice(11, withMs ? 23 : 19) + "Z";
}

// fmtShort is for axis ticks.
export function fmtShort(d, spanMs) {
  const iso = d.toISOString();
  if (spanMs > 2 * 86400e3) return iso.slice(5, 10) + " " + iso.slice(11, 16);
  return iso.slice(11, spanMs < 600e3 ? 19 : 16);
}

// fmtAgo: "3 min ago", "in 2 h".
export function fmtAgo(d, now = Date.now()) {
  const t = d instanceof Date ? d.getTime() : Date.parse(d);
  const diff = t - now;
  const a = Math.abs(diff);
  let v;
  if (a < 60e3) v = Math.round(a / 1e3) + " s";
  else if (a < 3600e3) v = Math.round(a / 60e3) + " min";
  else if (a < 86400e3) v = (a / 3600e3).toFixed(a < 36000e3 ? 1 : 0) + " h";
  else v = (a / 86400e3).toFixed(1) + " d";
  return diff < 0 ? v + " ago" : "in " + v;
}

// fmtDuration: a remaining TTL in ms as "1 h 20 min".
export function fmtDuration(ms) {
  if (ms <= 0) return "expired";
  const s = Math.floor(ms / 1e3);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return d + " d " + hh + " h";
  if (hh) return hh + " h " + mm + " min";
  if (mm) return mm + " min " + ss + " s";
  return ss + " s";
}

// niceInterval picks a bucket size for about `buckets` buckets over span
// (ms), at least min, from the sizes people read easily; the collector
// aligns buckets on multiples of it.
export function niceInterval(span, buckets, min = 1e3) {
  const steps = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800].map((x) => x * 1e3);
  const want = Math.max(min, span / buckets);
  for (const s of steps) if (s >= want) return s;
  return steps[steps.length - 1];
}

export function intervalParam(ms) {
  if (ms % 86400e3 === 0) return ms / 86400e3 * 24 + "h";
  if (ms % 3600e3 === 0) return ms / 3600e3 + "h";
  if (ms % 60e3 === 0) return ms / 60e3 + "m";
  return ms / 1e3 + "s";
}

function toLocalInput(d) {
  // datetime-local inputs are in UTC here, as every time the UI shows.
  return d.toISOString().slice(0, 16);
}

// picker renders the time-range control. onChange(Range) is called when
// the user picks another range.
export function picker(range, onChange) {
  const sel = h("select", { id: "range-preset", "aria-label": "Time range" },
    PRESETS.map(([v, label]) => h("option", { value: v, selected: range.from === v && !range.to }, label)),
    h("option", { value: "custom", selected: !PRESETS.some(([v]) => v === range.from) || !!range.to }, "Custom…"));
  const [a, b] = range.bounds();
  const fromIn = h("input", { type: "datetime-local", id: "range-from", "aria-label": "From (UTC)", value: Number.isNaN(a.getTime()) ? "" : toLocalInput(a) });
  const toIn = h("input", { type: "datetime-local", id: "range-to", "aria-label": "To (UTC)", value: Number.isNaN(b.getTime()) ? "" : toLocalInput(b) });
  const apply = h("button", { type: "button" }, "Apply");
  const custom = h("span", { class: "custom-range", hidden: sel.value !== "custom" }, fromIn, h("span", { "aria-hidden": "true" }, "→"), toIn, apply, h("span", { class: "muted" }, "UTC"));
  sel.addEventListener("change", () => {
    if (sel.value === "custom") {
      custom.hidden = false;
      fromIn.focus();
      return;
    }
    custom.hidden = true;
    onChange(new Range(sel.value, ""));
  });
  apply.addEventListener("click", () => {
    const f = Date.parse(fromIn.value + ":00Z");
    const t = Date.parse(toIn.value + ":00Z");
    if (Number.isNaN(f) || Number.isNaN(t) || t <= f) {
      toIn.setCustomValidity("must be after From");
      toIn.reportValidity();
      return;
    }
    toIn.setCustomValidity("");
    onChange(new Range(new Date(f).toISOString(), new Date(t).toISOString()));
  });
  return h("div", { class: "range-picker" }, h("label", { for: "range-preset", class: "sr-only" }, "Time range"), sel, custom);
}

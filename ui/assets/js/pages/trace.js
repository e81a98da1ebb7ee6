// Request trace: every event of one http.request.id or trace.id, from every
// service that recorded it, on a timeline (one lane per service; requests
// drawn from their start for their event.duration).

import { h, s, replace, loading, errorBox, empty, fmtNum, uiURL } from "../dom.js";
import { get } from "../api.js";
import { Range, picker, fmtTime } from "../time.js";
import { valueOf, show, term } from "../fields.js";
import { detail } from "./event.js";

const MAX_PAGES = 20;

// fetchAll follows cursors (the scan budget may end a page early) up to a
// bound, oldest first.
async function fetchAll(q, range) {
  const hits = [];
  let cursor = "";
  let partial = false;
  for (let i = 0; i < MAX_PAGES; i++) {
    const b = await get("/v1/events", { q, ...range.params(), sort: "asc", limit: 1000, cursor });
    hits.push(...b.hits);
    cursor = b.next || "";
    partial = !!b.partial;
    if (!cursor) return { hits, complete: true };
  }
  return { hits, complete: false, partial };
}

function fmtMs(ms) {
  if (Math.abs(ms) < 1) return ms.toFixed(3) + " ms";
  if (Math.abs(ms) < 1000) return ms.toFixed(1) + " ms";
  return (ms / 1000).toFixed(2) + " s";
}

function timeline(events, onSelect) {
  const lanes = [...new Set(events.map((e) => e.service))];
  const t0 = Math.min(...events.map((e) => e.start));
  const t1 = Math.max(...events.map((e) => e.end), t0 + 1);
  const W = 900, laneH = 30, padL = 150, padR = 20, top = 24;
  const H = top + lanes.length * laneH + 10;
  const x = (t) => padL + ((t - t0) / (t1 - t0)) * (W - padL - padR);
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Timeline of " + events.length + " events over " + fmtMs(t1 - t0) + " across " + lanes.length + " services: " + lanes.join(", ") });
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(s("line", { x1: x(t), x2: x(t), y1: top - 6, y2: H - 6, class: "tick" }));
    svg.append(s("text", { x: x(t), y: 14, class: "xlabel", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, "+" + fmtMs(t - t0)));
  }
  lanes.forEach((lane, i) => {
    const y = top + i * laneH;
    svg.append(s("text", { x: 6, y: y + laneH / 2 + 4, class: "lane-label" }, lane.length > 22 ? lane.slice(0, 21) + "…" : lane));
    svg.append(s("line", { x1: padL, x2: W - padR, y1: y + laneH / 2, y2: y + laneH / 2, class: "lane" }));
  });
  events.forEach((e, i) => {
    const y = top + lanes.indexOf(e.service) * laneH + 7;
    const w = Math.max(3, x(e.end) - x(e.start));
    const g = s("g", { class: ["span", e.outcome === "failure" ? "fail" : "ok"], tabindex: "0", role: "button", "aria-label": e.label });
    g.append(s("rect", { x: x(e.start), y, width: w, height: laneH - 14, rx: 2 }));
    g.append(s("title", {}, e.label));
    g.addEventListener("click", () => onSelect(i));
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        onSelect(i);
      }
    });
    svg.append(g);
  });
  return h("div", { class: "timeline-box" }, svg);
}

export async function render(ctx) {
  const p = ctx.params;
  const reqID = p.get("request_id") || "";
  const traceID = p.get("trace_id") || "";
  const range = Range.fromParams(p, "24h");
  const kind = traceID ? "trace_id" : "request_id";
  const input = h("input", { type: "search", id: "trace-id", value: traceID || reqID, spellcheck: "false", "aria-label": "Request or trace id", placeholder: "01a213cb-c08f-7515-b475-5e06c6b773f2" });
  const kindSel = h("select", { id: "trace-kind", "aria-label": "Id kind" },
    h("option", { value: "request_id", selected: kind === "request_id" }, "http.request.id"),
    h("option", { value: "trace_id", selected: kind === "trace_id" }, "trace.id"));
  const form = h("form", { class: "query", role: "search" }, kindSel, input, h("button", { type: "submit", class: "primary" }, "Trace"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    ctx.setParams(kindSel.value === "trace_id" ? { trace_id: v, request_id: "" } : { request_id: v, trace_id: "" });
  });
  const head = h("div", { class: "page-head" }, h("h1", {}, "Request trace"), form,
    h("div", { class: "controls" }, picker(range, (r) => ctx.setParams({ from: r.from, to: r.to }))));
  const body = h("div", { class: "trace-body" });
  const root = h("div", { class: "trace" }, head, body);
  const id = traceID || reqID;
  if (!id) {
    replace(body, h("p", { class: "state empty" }, "Enter an http.request.id (the correlation id every event of a request carries, echoed to clients as X-Request-ID) or a W3C trace.id, or open one from an event in ", h("a", { href: "/ui/search" }, "search"), "."));
    return root;
  }
  const field = traceID ? "trace.id" : "http.request.id";
  const q = term(field, id);
  const res = await fetchAll(q, range);
  if (!res.hits.length) {
    replace(body, empty("No event with " + field + " " + id + " in this range. Try a wider range."));
    return root;
  }
  const events = res.hits.map((hit) => {
    const ev = hit.event || {};
    const start = Date.parse(ev["@timestamp"]);
    const durNs = Number(valueOf(ev, "event.duration")) || 0;
    const service = show(valueOf(ev, "service.name")) || "(no service.name)";
    const action = show(valueOf(ev, "event.action"));
    const status = show(valueOf(ev, "http.response.status_code"));
    const path = show(valueOf(ev, "url.path"));
    return { hit, ev, start, end: start + durNs / 1e6, service, action, status, path, outcome: show(valueOf(ev, "event.outcome")),
      label: service + ": " + action + (status ? " " + status : "") + (path ? " " + path : "") + " at " + fmtTime(new Date(start), true) + (durNs ? ", " + fmtMs(durNs / 1e6) : "") };
  });
  const t0 = Math.min(...events.map((e) => e.start));
  const detBox = h("div", { class: "trace-detail" });
  const rows = [];
  const select = (i) => {
    rows.forEach((r, j) => r.classList.toggle("selected", i === j));
    replace(detBox, h("h2", {}, "Event " + (i + 1) + " of " + events.length), detail(events[i].ev, events[i].hit.ledger_index));
    rows[i].scrollIntoView({ block: "nearest" });
  };
  const tbody = h("tbody", {});
  events.forEach((e, i) => {
    const tr = h("tr", { tabindex: "0", class: e.outcome === "failure" ? "fail" : null },
      h("td", {}, "+" + fmtMs(e.start - t0)), h("td", {}, e.service), h("td", {}, e.action), h("td", {}, e.outcome),
      h("td", {}, e.status), h("td", {}, e.path), h("td", {}, e.end > e.start ? fmtMs(e.end - e.start) : ""));
    tr.addEventListener("click", () => select(i));
    tr.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") select(i);
      else if (ev.key === "ArrowDown" && rows[i + 1]) rows[i + 1].focus();
      else if (ev.key === "ArrowUp" && rows[i - 1]) rows[i - 1].focus();
      else return;
      ev.preventDefault();
    });
    rows.push(tr);
    tbody.append(tr);
  });
  const services = new Set(events.map((e) => e.service));
  replace(body,
    h("p", { class: "summary" }, fmtNum(events.length) + " events from " + services.size + " service" + (services.size === 1 ? "" : "s") + " over " + fmtMs(Math.max(...events.map((e) => e.end)) - t0) + ", starting " + fmtTime(new Date(t0), true) + ". ",
      h("a", { href: uiURL("/ui/search", { q, ...range.params(), sort: "asc" }) }, "Open in search"),
      res.complete ? "" : h("span", { class: "warn" }, " More events may exist beyond the first " + res.hits.length + ".")),
    timeline(events, select),
    h("table", { class: "events trace-table", "aria-label": "Events of the trace, in time order" },
      h("thead", {}, h("tr", {}, ["Offset", "Service", "Action", "Outcome", "Status", "Path", "Duration"].map((c) => h("th", { scope: "col" }, c)))), tbody),
    detBox);
  return root;
}

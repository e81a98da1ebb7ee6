// Alerts: the list by status, each alert's evidence events, and the
// lifecycle (acknowledge, resolve) for admins. When the collector serves no
// alert API, the alert documents stored in the trail are listed read-only.

import { h, replace, loading, errorBox, empty, fmtNum, uiURL } from "../dom.js";
import { get, send, optional, list, isAdmin } from "../api.js";
import { fmtTime, fmtAgo } from "../time.js";
import { valueOf, show, term } from "../fields.js";
import { groupText } from "./overview.js";
import { detail } from "./event.js";

const STATUSES = [["open", "Open"], ["acknowledged", "Acknowledged"], ["resolved", "Resolved"], ["", "All"]];

// evidence loads the alert's stored document and the events it names.
async function evidence(alertID) {
  const doc = await get("/v1/events/" + encodeURIComponent(alertID));
  const ev = doc.event || {};
  const ids = valueOf(ev, "trailguard.alert.evidence.event_id") || [];
  const idx = valueOf(ev, "trailguard.alert.evidence.index") || [];
  const trig = valueOf(ev, "trailguard.alert.trigger.event_id");
  const want = [...new Set([...(Array.isArray(ids) ? ids : [ids]), ...(trig ? [trig] : [])])].filter(Boolean).slice(0, 100);
  let hits = [];
  if (want.length) {
    const q = "event.id:(" + want.map((i) => JSON.stringify(String(i))).join(" or ") + ")";
    const r = await get("/v1/events", { q, sort: "asc", limit: 200, from: new Date(0).toISOString() });
    hits = r.hits;
  }
  return { doc: ev, hits, indexes: Array.isArray(idx) ? idx : [idx] };
}

function evidenceView(alertID) {
  const box = h("div", { class: "evidence" }, loading("evidence"));
  evidence(alertID).then(({ doc, hits, indexes }) => {
    const rows = hits.map((hit) => {
      const ev = hit.event || {};
      let det = null;
      const btn = h("button", { type: "button", class: "icon expand", "aria-expanded": "false", "aria-label": "Show event" }, "▸");
      const tr = h("tr", {}, h("td", {}, btn), h("td", {}, fmtTime(ev["@timestamp"], true)), h("td", {}, show(valueOf(ev, "event.action"))),
        h("td", {}, show(valueOf(ev, "client.ip") || valueOf(ev, "source.ip"))), h("td", {}, show(valueOf(ev, "user.name"))),
        h("td", {}, show(valueOf(ev, "url.path"))), h("td", {}, show(valueOf(ev, "http.response.status_code"))));
      btn.addEventListener("click", () => {
        if (det) {
          det.remove();
          det = null;
          btn.setAttribute("aria-expanded", "false");
          return;
        }
        det = h("tr", { class: "detail-row" }, h("td", { colspan: "7" }, detail(ev, hit.ledger_index)));
        tr.after(det);
        btn.setAttribute("aria-expanded", "true");
      });
      return tr;
    });
    const start = valueOf(doc, "event.start"), end = valueOf(doc, "event.end");
    const group = valueOf(doc, "trailguard.alert.group") || {};
    const gq = Object.entries(group).map(([k, v]) => term(k, v)).join(" and ");
    replace(box,
      h("p", { class: "muted" }, show(doc.message)),
      rows.length ? h("table", { class: "events", "aria-label": "Evidence events" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Details")), ["Time", "Action", "Client", "User", "Path", "Status"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))
        : empty(indexes.length ? "The evidence is named by ledger index only: " + indexes.slice(0, 20).join(", ") + (indexes.length > 20 ? "…" : "") : "This alert names no evidence events."),
      h("p", {},
        h("a", { href: uiURL("/ui/event", { id: alertID }) }, "The alert document (prove it)"),
        gq && start ? [" · ", h("a", { href: uiURL("/ui/search", { q: gq, from: new Date(Date.parse(start) - 60e3).toISOString(), to: new Date(Date.parse(end || start) + 60e3).toISOString(), sort: "asc" }) }, "All events of " + Object.entries(group).map(([k, v]) => k + "=" + v).join(", ") + " around it")] : null));
  }).catch((e) => replace(box, errorBox(e)));
  return box;
}

function lifecycle(a, onDone) {
  if (!isAdmin() || a.status === "resolved") return null;
  const note = h("input", { type: "text", class: "note-in", "aria-label": "Note for " + (a.title || a.id), placeholder: "note (optional)", maxlength: "500" });
  const msg = h("span", { class: "form-msg", role: "status" });
  const act = async (status, btn) => {
    btn.disabled = true;
    try {
      await send("PATCH", "/v1/alerts/" + encodeURIComponent(a.id), { status, note: note.value || undefined });
      onDone();
    } catch (e) {
      msg.textContent = e.message;
      btn.disabled = false;
    }
  };
  const ack = a.status === "open" ? h("button", { type: "button", class: "ack" }, "Acknowledge") : null;
  const res = h("button", { type: "button", class: "resolve" }, "Resolve");
  if (ack) ack.addEventListener("click", () => act("acknowledged", ack));
  res.addEventListener("click", () => act("resolved", res));
  return h("div", { class: "lifecycle" }, note, ack, res, msg);
}

function alertCard(a, reload, open) {
  const evBox = h("div", {});
  const toggle = h("button", { type: "button", class: "link", "aria-expanded": "false" }, "Evidence");
  toggle.addEventListener("click", () => {
    if (evBox.firstChild) {
      replace(evBox);
      toggle.setAttribute("aria-expanded", "false");
    } else {
      replace(evBox, evidenceView(a.id));
      toggle.setAttribute("aria-expanded", "true");
    }
  });
  if (open) {
    replace(evBox, evidenceView(a.id));
    toggle.setAttribute("aria-expanded", "true");
  }
  return h("li", { class: ["alert-card", "status-" + (a.status || "stored")], id: "alert-" + a.id, dataset: { id: a.id } },
    h("div", { class: "alert-head" },
      h("span", { class: ["pill", "sev-" + (a.level || "medium")] }, a.level || "alert"),
      h("h2", {}, a.title || a.rule_name || a.rule_id),
      a.status ? h("span", { class: ["status", a.status] }, a.status) : null),
    h("p", { class: "alert-meta muted" },
      groupText(a), a.group || a.fields ? " · " : "",
      (a.count ? fmtNum(a.count) + " · " : ""),
      "first " + fmtTime(a.first || a.time) + ", last " + fmtAgo(a.last_seen || a.last || a.time),
      a.repeats ? " · repeated " + a.repeats + "×" : "",
      a.updated_by ? " · " + a.status + " by " + a.updated_by + (a.updated ? " " + fmtAgo(a.updated) : "") : "",
      a.note ? h("span", {}, " · “", a.note, "”") : null),
    h("p", { class: "alert-msg" }, a.message || ""),
    h("div", { class: "alert-actions" }, toggle, lifecycle(a, reload)),
    evBox);
}

// fromDoc makes an alert from its stored document (no lifecycle).
function fromDoc(hit) {
  const ev = hit.event || {};
  return {
    id: valueOf(ev, "event.id"), title: show(valueOf(ev, "rule.name")), rule_name: show(valueOf(ev, "trailguard.alert.rule_name")),
    level: show(valueOf(ev, "log.level")), message: show(ev.message), time: ev["@timestamp"], first: valueOf(ev, "event.start"), last: valueOf(ev, "event.end"),
    count: valueOf(ev, "trailguard.alert.count"), group: valueOf(ev, "trailguard.alert.group"),
  };
}

export async function render(ctx) {
  const status = ctx.params.has("status") ? ctx.params.get("status") : "open";
  const openID = ctx.params.get("id") || "";
  const sel = h("select", { id: "alert-status", "aria-label": "Status" }, STATUSES.map(([v, l]) => h("option", { value: v, selected: v === status }, l)));
  sel.addEventListener("change", () => ctx.setParams({ status: sel.value === "open" ? "" : sel.value || "all" }));
  const body = h("div", {}, loading("alerts"));
  const root = h("div", { class: "alerts" }, h("div", { class: "page-head" }, h("h1", {}, "Alerts"), h("div", { class: "controls" }, h("label", { for: "alert-status" }, "Status"), sel)), body);
  const load = async () => {
    const st = status === "all" ? "" : status;
    const r = await optional("/v1/alerts", { status: st, limit: 500 });
    if (!ctx.alive()) return;
    if (r.missing) {
      const docs = await get("/v1/events", { q: "event.kind:alert and event.dataset:trailguard.alert", from: "720h", limit: 200 });
      const items = docs.hits.map(fromDoc);
      replace(body,
        h("p", { class: "state pending" }, "This collector does not serve the alert lifecycle yet (GET /v1/alerts): the alert documents stored in the trail over the last 30 days are listed, read-only."),
        items.length ? h("ul", { class: "alert-cards" }, items.map((a) => alertCard(a, load, a.id === openID))) : empty("No alerts in the trail."));
      return;
    }
    const items = list(r.body, "alerts", "items");
    replace(body,
      h("p", { class: "summary", role: "status" }, fmtNum(items.length) + " " + (st || "") + " alert" + (items.length === 1 ? "" : "s") + (isAdmin() ? "" : " (acknowledging and resolving needs the admin role)") + "."),
      items.length ? h("ul", { class: "alert-cards" }, items.map((a) => alertCard(a, load, a.id === openID))) : empty(st === "open" ? "No open alerts." : "No alerts."));
    if (openID) {
      const el = document.getElementById("alert-" + openID);
      if (el) setTimeout(() => el.scrollIntoView({ block: "start" }), 0);
    }
  };
  await load().catch((e) => replace(body, errorBox(e, load)));
  return root;
}

// One event: pretty JSON, its fields with filter actions, its ledger index,
// and "prove": its inclusion proof checked here, in the browser, against
// the signed checkpoint.

import { h, replace, loading, errorBox, uiURL } from "../dom.js";
import { get } from "../api.js";
import { checkInclusion, b64decode } from "../proof.js";
import { flatten, show, term } from "../fields.js";
import { fmtTime } from "../time.js";

// prettyJSON renders a value as indented JSON, every piece a text node.
export function prettyJSON(v) {
  const pre = h("pre", { class: "json", tabindex: "0", "aria-label": "Event as JSON" });
  const out = (node) => pre.append(node);
  const str = (t, cls) => out(cls ? h("span", { class: cls }, t) : document.createTextNode(t));
  const walk = (x, ind) => {
    if (x === null) return str("null", "j-null");
    if (Array.isArray(x)) {
      if (!x.length) return str("[]");
      str("[\n");
      x.forEach((y, i) => {
        str(ind + "  ");
        walk(y, ind + "  ");
        str(i < x.length - 1 ? ",\n" : "\n");
      });
      return str(ind + "]");
    }
    if (typeof x === "object") {
      const keys = Object.keys(x);
      if (!keys.length) return str("{}");
      str("{\n");
      keys.forEach((k, i) => {
        str(ind + "  ");
        str(JSON.stringify(k), "j-key");
        str(": ");
        walk(x[k], ind + "  ");
        str(i < keys.length - 1 ? ",\n" : "\n");
      });
      return str(ind + "}");
    }
    if (typeof x === "string") return str(JSON.stringify(x), "j-str");
    if (typeof x === "number") return str(String(x), "j-num");
    return str(String(x), "j-bool");
  };
  walk(v, "");
  return pre;
}

// verifierKey is the key proofs are checked with: the user's own copy if
// they saved one (Integrity page), else the collector's.
export async function verifierKey() {
  const own = localStorage.getItem("tg.vkey");
  if (own) return { key: own, source: "your saved key" };
  const st = await get("/v1/integrity");
  return { key: st.verifier_key, source: "the collector's key (save your own copy on the Integrity page to check independently)" };
}

function proveBox(id) {
  const out = h("div", { class: "prove-result", role: "status", "aria-live": "polite" });
  const btn = h("button", { type: "button", class: "prove" }, "Prove");
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    replace(out, loading("proof"));
    try {
      const full = await get("/v1/events/" + encodeURIComponent(id));
      const bundle = full.inclusion_proof;
      if (!bundle) {
        replace(out, h("p", { class: "state warn" }, full.inclusion_proof_error || "no proof available yet"));
        return;
      }
      if (!bundle.record) {
        replace(out, h("p", { class: "state warn" }, "The record was deleted by retention: only its hash remains, so the leaf cannot be recomputed here."));
        return;
      }
      const record = b64decode(bundle.record);
      const vk = await verifierKey();
      const res = await checkInclusion(record, bundle, vk.key);
      // The event shown must be the record proven.
      let same = false;
      try {
        same = JSON.stringify(JSON.parse(new TextDecoder().decode(record))) === JSON.stringify(full.event);
      } catch (e) {
        same = false;
      }
      res.steps.push({ name: "Event shown", status: same ? "ok" : "fail", detail: same ? "is the proven record" : "differs from the proven record" });
      const ok = res.ok && same;
      replace(out,
        h("p", { class: ["verdict", ok ? "ok" : "fail"], "data-verdict": ok ? "ok" : "fail" }, ok ? "✔ Included in the signed ledger" : "✘ Proof failed"),
        h("ul", { class: "steps" }, res.steps.map((s) => h("li", { class: "step-" + s.status }, h("strong", {}, s.name + ": "), s.status === "ok" ? "" : s.status + " — ", s.detail))),
        h("p", { class: "muted" }, "Ledger index " + bundle.index + " of " + bundle.tree_size + "; key: " + vk.source + "."));
    } catch (e) {
      replace(out, errorBox(e));
    } finally {
      btn.disabled = false;
    }
  });
  return { btn, out };
}

// detail renders an event. opts.onFilter(field, value, negate) adds a
// filter to the search it came from.
export function detail(ev, ledgerIndex, opts = {}) {
  const id = ev && ev.event && ev.event.id;
  const reqID = ev && ev.http && ev.http.request && ev.http.request.id;
  const traceID = ev && ev.trace && ev.trace.id;
  const actions = h("div", { class: "actions" });
  let proof = null;
  if (id) {
    proof = proveBox(id);
    actions.append(proof.btn);
    if (!opts.standalone) actions.append(h("a", { href: uiURL("/ui/event", { id }), class: "button" }, "Open"));
  }
  if (reqID) actions.append(h("a", { href: uiURL("/ui/trace", { request_id: reqID }), class: "button" }, "Trace request"));
  if (traceID) actions.append(h("a", { href: uiURL("/ui/trace", { trace_id: traceID }), class: "button" }, "Trace"));
  const rows = [];
  for (const [k, v] of flatten(ev)) {
    const val = show(v);
    const cells = [h("th", { scope: "row" }, k), h("td", {}, val)];
    if (opts.onFilter) {
      cells.push(h("td", { class: "filter-actions" },
        h("button", { type: "button", class: "icon", title: "Filter for " + k + " = this value", "aria-label": "Filter for " + k, on: { click: () => opts.onFilter(k, v, false) } }, "+"),
        h("button", { type: "button", class: "icon", title: "Filter out this value", "aria-label": "Filter out " + k, on: { click: () => opts.onFilter(k, v, true) } }, "−")));
    }
    rows.push(h("tr", {}, cells));
  }
  return h("div", { class: "event-detail" },
    h("p", { class: "meta" }, h("strong", {}, show(ev && ev.event && ev.event.action) || "event"), " · ", fmtTime(ev && ev["@timestamp"], true),
      ledgerIndex !== undefined ? h("span", { class: "muted" }, " · ledger index " + ledgerIndex) : null),
    actions,
    proof ? proof.out : null,
    h("div", { class: "detail-cols" },
      h("table", { class: "fields" }, h("caption", { class: "sr-only" }, "Fields"), h("tbody", {}, rows)),
      prettyJSON(ev)));
}

// filterQuery adds field:value (or not field:value) to a query.
export function filterQuery(q, field, v, negate) {
  const t = Array.isArray(v) ? "(" + v.map((x) => term(field, x)).join(" or ") + ")" : term(field, v);
  const clause = (negate ? "not " : "") + t;
  return q && q.trim() ? "(" + q.trim() + ") and " + clause : clause;
}

export async function render(ctx) {
  const id = ctx.params.get("id") || "";
  if (!id) return h("div", {}, h("h1", {}, "Event"), h("p", {}, "No event named. Open one from ", h("a", { href: "/ui/search" }, "search"), "."));
  const res = await get("/v1/events/" + encodeURIComponent(id));
  return h("div", {}, h("h1", {}, "Event ", h("code", {}, id)),
    detail(res.event, res.ledger_index, { standalone: true, onFilter: (f, v, neg) => ctx.go(uiURL("/ui/search", { q: filterQuery("", f, v, neg) })) }));
}

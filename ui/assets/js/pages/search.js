// Search: the query language with suggestions, a time range, a histogram,
// a results table with chosen columns, event detail, paging and live tail.

import { h, replace, loading, errorBox, empty, fmtNum, uiURL } from "../dom.js";
import { get, optional, APIError } from "../api.js";
import { Range, picker, niceInterval, intervalParam, fmtTime } from "../time.js";
import { histogram, fillBuckets } from "../charts.js";
import { INDEXED, COMMON, VALUES, flatten, valueOf, show } from "../fields.js";
import { detail, filterQuery } from "./event.js";

export const DEFAULT_COLS = ["@timestamp", "event.action", "event.outcome", "source.ip", "user.name", "http.request.method", "url.path", "http.response.status_code"];
const PAGE = 100;
const TAIL_MAX = 500;

// queryBox is the query input with field and value suggestions (an ARIA
// combobox: arrows move, Enter or Tab accept, Escape closes).
export function queryBox(value, onSubmit, seenFields) {
  const input = h("input", { type: "search", id: "q", name: "q", value, autocomplete: "off", spellcheck: "false", role: "combobox",
    "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": "q-suggest", "aria-label": "Query", placeholder: "user.name:alice and event.outcome:failure" });
  const listbox = h("ul", { id: "q-suggest", role: "listbox", class: "suggest", hidden: true, "aria-label": "Suggestions" });
  let items = [];
  let active = -1;
  let topCache = new Map();
  let seq = 0;
  const close = () => {
    listbox.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const tokenAt = () => {
    const pos = input.selectionStart ?? input.value.length;
    const before = input.value.slice(0, pos);
    const m = /([^\s()]*)$/.exec(before);
    return { start: pos - m[1].length, end: pos, tok: m[1] };
  };
  const accept = (i) => {
    const it = items[i];
    if (!it) return;
    const { start, end } = tokenAt();
    const v = input.value;
    const ins = it.insert;
    input.value = v.slice(0, start) + ins + v.slice(end);
    const caret = start + ins.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    if (ins.endsWith(":")) update();
  };
  const paint = () => {
    replace(listbox, items.map((it, i) => {
      const li = h("li", { id: "q-opt-" + i, role: "option", "aria-selected": i === active ? "true" : "false", class: i === active ? "active" : null },
        h("span", {}, it.label), it.hint ? h("span", { class: "hint" }, it.hint) : null);
      li.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        accept(i);
      });
      return li;
    }));
    listbox.hidden = items.length === 0;
    input.setAttribute("aria-expanded", items.length ? "true" : "false");
    if (active >= 0) input.setAttribute("aria-activedescendant", "q-opt-" + active);
    else input.removeAttribute("aria-activedescendant");
  };
  const update = async () => {
    const my = ++seq;
    const { tok } = tokenAt();
    const low = tok.toLowerCase();
    if (/^(and|or|not)$/i.test(tok)) return close();
    const colon = tok.indexOf(":");
    if (colon < 0) {
      if (!tok) return close();
      const all = [...new Set([...INDEXED, ...COMMON, ...seenFields()])];
      items = all.filter((f) => f.toLowerCase().startsWith(low)).slice(0, 12)
        .map((f) => ({ label: f, insert: f + ":", hint: INDEXED.includes(f) ? "indexed" : "" }));
      if (items.length === 1 && items[0].label === tok) items = [];
    } else {
      const field = tok.slice(0, colon);
      const vp = tok.slice(colon + 1).replace(/^"/, "").toLowerCase();
      let vals = VALUES[field] ? VALUES[field].map((v) => ({ value: v })) : null;
      if (!vals && INDEXED.includes(field) && field !== "@timestamp" && field !== "event.id" && field !== "http.request.id") {
        if (!topCache.has(field)) {
          topCache.set(field, get("/v1/stats", { top: field, n: 20, from: "24h" }, { background: true }).then((r) => (r.top || []).map((t) => ({ value: t.value, count: t.count }))).catch(() => []));
        }
        vals = await topCache.get(field);
        if (my !== seq) return;
      }
      if (!vals) return close();
      items = vals.filter((v) => String(v.value).toLowerCase().startsWith(vp)).slice(0, 12).map((v) => {
        const raw = String(v.value);
        const needsQuote = !/^[A-Za-z0-9_.\-/@]+$/.test(raw);
        const lit = needsQuote ? '"' + raw.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"' : raw;
        return { label: raw, insert: field + ":" + lit, hint: v.count !== undefined ? fmtNum(v.count) : "" };
      });
    }
    active = items.length ? 0 : -1;
    paint();
  };
  input.addEventListener("input", update);
  input.addEventListener("keydown", (ev) => {
    if (!listbox.hidden && items.length) {
      if (ev.key === "ArrowDown") {
        active = (active + 1) % items.length;
        paint();
        ev.preventDefault();
        return;
      }
      if (ev.key === "ArrowUp") {
        active = (active - 1 + items.length) % items.length;
        paint();
        ev.preventDefault();
        return;
      }
      if ((ev.key === "Tab" || ev.key === "Enter") && active >= 0) {
        accept(active);
        ev.preventDefault();
        return;
      }
      if (ev.key === "Escape") {
        close();
        ev.preventDefault();
        ev.stopPropagation();
        return;
      }
    }
    if (ev.key === "Enter") {
      ev.preventDefault();
      close();
      onSubmit(input.value);
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 150));
  return { input, listbox };
}

function columnsPicker(cols, seen, onChange) {
  const box = h("details", { class: "columns" }, h("summary", {}, "Columns (" + cols.length + ")"));
  const all = [...new Set([...cols, ...DEFAULT_COLS, ...INDEXED, ...seen])];
  const fs = h("fieldset", {}, h("legend", { class: "sr-only" }, "Columns to show"));
  for (const f of all) {
    const id = "col-" + f.replace(/[^A-Za-z0-9_-]/g, "_");
    const cb = h("input", { type: "checkbox", id, value: f, checked: cols.includes(f) });
    cb.addEventListener("change", () => {
      const next = cb.checked ? [...cols, f] : cols.filter((c) => c !== f);
      onChange(next);
    });
    fs.append(h("label", { for: id, class: "check" }, cb, " ", f));
  }
  const add = h("input", { type: "text", id: "col-add", placeholder: "any.field", "aria-label": "Add a column by field name", spellcheck: "false" });
  add.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && /^[A-Za-z0-9_@.\-]+$/.test(add.value)) {
      ev.preventDefault();
      onChange([...cols, add.value]);
    }
  });
  const reset = h("button", { type: "button", class: "link" }, "Default columns");
  reset.addEventListener("click", () => onChange(DEFAULT_COLS));
  box.append(fs, h("div", { class: "col-add" }, add, reset));
  return box;
}

export async function render(ctx) {
  const p = ctx.params;
  const range = Range.fromParams(p, "24h");
  const q = p.get("q") || "";
  const sort = p.get("sort") === "asc" ? "asc" : "desc";
  const cols = (p.get("cols") || "").split(",").filter((c) => /^[A-Za-z0-9_@.\-]+$/.test(c));
  const columns = cols.length ? cols : DEFAULT_COLS;
  const seen = new Set();
  const seenFields = () => [...seen];

  const submit = (value) => ctx.setParams({ q: value.trim(), cursor: "" });
  const qb = queryBox(q, submit, seenFields);
  const go = h("button", { type: "button", class: "primary" }, "Search");
  go.addEventListener("click", () => submit(qb.input.value));
  const qError = h("p", { class: "form-msg", id: "q-error", role: "alert" });
  qb.input.setAttribute("aria-describedby", "q-error");
  const tailBtn = h("button", { type: "button", id: "tail", "aria-pressed": "false" }, "Live tail");
  const histBox = h("div", { class: "hist-box" }, loading("histogram"));
  const summary = h("p", { class: "summary", role: "status" });
  const tableBox = h("div", { class: "results" }, loading("events"));
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const colBox = h("div", {});

  const head = h("div", { class: "page-head" },
    h("h1", {}, "Search"),
    h("form", { class: "query", role: "search", on: { submit: (ev) => { ev.preventDefault(); submit(qb.input.value); } } },
      h("div", { class: "combo" }, qb.input, qb.listbox), go),
    qError,
    h("div", { class: "controls" },
      picker(range, (r) => ctx.setParams({ from: r.from, to: r.to })),
      h("label", { for: "sort" }, "Order"),
      (() => {
        const sel = h("select", { id: "sort" }, h("option", { value: "desc", selected: sort === "desc" }, "Newest first"), h("option", { value: "asc", selected: sort === "asc" }, "Oldest first"));
        sel.addEventListener("change", () => ctx.setParams({ sort: sel.value === "desc" ? "" : sel.value }));
        return sel;
      })(),
      colBox, tailBtn));
  const root = h("div", { class: "search" }, head, histBox, summary, tableBox, more);

  // The table.
  const thead = h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "expand-col" }, h("span", { class: "sr-only" }, "Details")), columns.map((c) => h("th", { scope: "col" }, c))));
  const tbody = h("tbody", {});
  const table = h("table", { class: "events", "aria-label": "Matching events" }, thead, tbody);
  const addRow = (hit, atTop) => {
    const ev = hit.event || {};
    for (const k of flatten(ev).keys()) seen.add(k);
    const btn = h("button", { type: "button", class: "icon expand", "aria-expanded": "false", "aria-label": "Show event details" }, "▸");
    const tr = h("tr", { class: "ev-row", tabindex: "-1" }, h("td", {}, btn), columns.map((c) => {
      const v = show(valueOf(ev, c));
      return h("td", { class: "c-" + c.replace(/[^A-Za-z0-9_-]/g, "_"), title: v.length > 60 ? v : null }, c === "@timestamp" ? fmtTime(v, true) : v);
    }));
    let det = null;
    const toggle = () => {
      if (det) {
        det.remove();
        det = null;
        btn.setAttribute("aria-expanded", "false");
        btn.textContent = "▸";
        return;
      }
      det = h("tr", { class: "detail-row" }, h("td", { colspan: String(columns.length + 1) },
        detail(ev, hit.ledger_index, { onFilter: (f, v, neg) => ctx.setParams({ q: filterQuery(q, f, v, neg) }) })));
      tr.after(det);
      btn.setAttribute("aria-expanded", "true");
      btn.textContent = "▾";
    };
    btn.addEventListener("click", toggle);
    tr.addEventListener("dblclick", toggle);
    if (atTop) tbody.prepend(tr);
    else tbody.append(tr);
    return tr;
  };

  let cursor = "";
  const loadPage = async () => {
    const res = await get("/v1/events", { q, ...range.params(), sort, limit: PAGE, cursor }, { full: true });
    const b = res.body;
    if (!ctx.alive()) return;
    for (const hit of b.hits) addRow(hit, false);
    cursor = b.next || "";
    more.hidden = !cursor;
    const n = tbody.querySelectorAll("tr.ev-row").length;
    const notes = [];
    if (b.partial) notes.push("the scan budget ran out: more may match further on (Load more continues)");
    if (b.index_mismatches && b.index_mismatches.length) notes.push(b.index_mismatches.length + " index rows disagreed with the ledger and were left out (run trailguard reindex)");
    if (b.unreadable && b.unreadable.length) notes.push(b.unreadable.length + " ledger records could not be read (run trailguard verify)");
    replace(summary, fmtNum(n) + " event" + (n === 1 ? "" : "s") + " shown" + (cursor ? ", more available" : "") + ".", notes.length ? h("span", { class: "warn" }, " " + notes.join("; ") + ".") : "");
    if (!n) replace(tableBox, empty(q ? "No events match this query in this range." : "No events in this range."));
    else if (!table.isConnected) replace(tableBox, table);
    replace(colBox, columnsPicker(columns, seen, (next) => ctx.setParams({ cols: next.join(",") === DEFAULT_COLS.join(",") ? "" : next.join(",") }, { replace: true })));
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      await loadPage();
    } catch (e) {
      summary.append(errorBox(e));
    } finally {
      more.disabled = false;
    }
  });

  const showQueryError = (e) => {
    if (e instanceof APIError && e.status === 400 && e.body.parameter === "q") {
      qError.textContent = e.message;
      qb.input.setAttribute("aria-invalid", "true");
      if (typeof e.body.position === "number") {
        qb.input.focus();
        qb.input.setSelectionRange(e.body.position, Math.min(qb.input.value.length, e.body.position + 1));
      }
      return true;
    }
    return false;
  };

  // Live tail.
  let es = null;
  const stopTail = () => {
    if (es) es.close();
    es = null;
    tailBtn.setAttribute("aria-pressed", "false");
    tailBtn.textContent = "Live tail";
  };
  tailBtn.addEventListener("click", () => {
    if (es) return stopTail();
    const u = new URL("/ui/api/v1/tail", location.origin);
    if (q) u.searchParams.set("q", q);
    es = new EventSource(u.pathname + u.search);
    tailBtn.setAttribute("aria-pressed", "true");
    tailBtn.textContent = "Stop tail";
    if (!table.isConnected) replace(tableBox, table);
    let n = 0;
    es.addEventListener("event", (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch (e) {
        ev = { message: m.data };
      }
      const tr = addRow({ event: ev, ledger_index: Number(m.lastEventId) }, true);
      tr.classList.add("new");
      n++;
      const rows = tbody.querySelectorAll("tr.ev-row");
      if (rows.length > TAIL_MAX) rows[rows.length - 1].remove();
      summary.textContent = "Live: " + fmtNum(n) + " new event" + (n === 1 ? "" : "s") + " since the tail started (newest on top).";
    });
    // The collector ends a tail whose query costs too much to check
    // (its time budget): say why, and do not reconnect.
    es.addEventListener("stopped", (m) => {
      let why = "The live tail stopped.";
      try {
        why = JSON.parse(m.data).error || why;
      } catch (e) {
        /* keep the generic text */
      }
      stopTail();
      summary.textContent = why;
    });
    es.addEventListener("error", () => {
      if (es && es.readyState === EventSource.CLOSED) {
        summary.textContent = "The live tail stopped (signed out or the collector went away).";
        stopTail();
      }
    });
  });
  ctx.onCleanup(stopTail);

  // The first page is what the page waits for; the histogram follows (over
  // millions of events a count takes longer than finding the newest 100).
  const [t0, t1] = range.bounds();
  const interval = niceInterval(t1 - t0, 120, 1e3);
  const drawHist = (st, partial) => {
    const b = fillBuckets(st, t0.getTime(), t1.getTime(), interval);
    const total = b.reduce((a, x) => a + x[1], 0);
    replace(histBox, h("p", { class: "muted hist-total" }, fmtNum(total) + " matching events " + range.label().toLowerCase().replace(/^last/, "in the last") + (partial ? " (partial count)" : "")),
      histogram({ title: "Matching events over time", from: t0.getTime(), to: t1.getTime(), interval, buckets: b,
        onPick: (a, z) => ctx.setParams({ from: new Date(a).toISOString(), to: new Date(z).toISOString() }) }));
    histBox.dataset.loaded = "1";
  };
  const histFromIndex = () => get("/v1/stats", { q, ...range.params(), interval: intervalParam(interval) }).then((st) => drawHist(st, st.partial));
  // Without a query the histogram is the count of every event: the
  // collector's per-minute counts answer it for whole-minute ranges.
  const histFromOverview = async () => {
    if (q || interval % 60e3 !== 0) return histFromIndex();
    const a = Math.floor(t0.getTime() / 60e3) * 60e3, z = Math.ceil(t1.getTime() / 60e3) * 60e3;
    const ov = await optional("/v1/overview", { from: new Date(a).toISOString(), to: new Date(z).toISOString(), interval: intervalParam(interval) });
    if (ov.missing || !ov.body.covered) return histFromIndex();
    const se = ov.body.series.events, s0 = Date.parse(se.start);
    drawHist({ buckets: se.counts.map((c, k) => ({ start: new Date(s0 + k * interval).toISOString(), count: c })) }, false);
  };
  const histP = histFromOverview();
  try {
    await loadPage();
  } catch (e) {
    if (showQueryError(e)) {
      replace(tableBox, empty("Fix the query to search."));
      replace(histBox);
    } else replace(tableBox, errorBox(e, () => ctx.go(location.pathname + location.search)));
  }
  histP.catch((e) => {
    if (!showQueryError(e)) replace(histBox, errorBox(e));
  });
  tableBox.dataset.loaded = "1";
  return root;
}

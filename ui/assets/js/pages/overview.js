// Overview: the trail at a glance over a time range, refreshed by itself.

import { h, replace, loading, errorBox, empty, fmtNum, uiURL } from "../dom.js";
import { get, optional, list } from "../api.js";
import { Range, picker, niceInterval, intervalParam, fmtAgo, fmtDuration, fmtTime } from "../time.js";
import { timeSeries, bars, fillBuckets } from "../charts.js";
import { term, valueOf, show } from "../fields.js";

// The rate-of-rise rules whose baseline the charts draw, with the query
// that counts what each rule counts (its base rule, as in detect/rules) and
// the built-in parameters, used when the collector does not list its rules.
export const RATE_RULES = {
  http401: {
    rule: "trailguard_401_rate_of_rise",
    title: "401 responses",
    query: "event.category:web and http.response.status_code:401",
    defaults: { timespan: 60e3, baseline: 3600e3, factor: 5, gte: 20 },
  },
  authz: {
    rule: "trailguard_authz_fail_spike",
    title: "Authorization failures (403)",
    query: "event.action:authz_fail",
    defaults: { timespan: 60e3, baseline: 3600e3, factor: 5, gte: 10 },
  },
};

const REFRESH = [["0", "Off"], ["10", "10 s"], ["30", "30 s"], ["60", "1 min"], ["300", "5 min"]];

function parseDur(v) {
  if (typeof v === "number") return v > 1e6 ? v / 1e6 : v * 1e3; // ns or s
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(String(v || ""));
  if (!m) return NaN;
  return parseFloat(m[1]) * { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2]];
}

// ruleParams reads a rate_of_rise rule's parameters from GET
// /v1/rules/{name}, falling back to the built-in values when the collector
// has not loaded it (detection off, or the rule replaced by another kind).
export function ruleParams(rule, defaults) {
  const c = rule && rule.correlation;
  if (!c || c.type !== "rate_of_rise") return { ...defaults, source: "built-in values; the collector does not run this rule" };
  const cond = c.condition || {};
  const p = { timespan: parseDur(c.timespan), baseline: parseDur(c.baseline), factor: Number(cond.factor), gte: Number(cond.gte) };
  for (const k of Object.keys(p)) if (!(p[k] > 0)) p[k] = defaults[k];
  return { ...p, source: "the collector's rule" };
}

// ewmaBand replays the detector's baseline over per-bucket counts: the
// rate per timespan, an EWMA with time constant `baseline`, and the firing
// threshold max(gte, factor × baseline). The detector updates every tenth
// of a timespan; at a bucket of one timespan the difference is within a
// few per cent of the baseline (see the chart's note).
export function ewmaBand(buckets, interval, p) {
  const scale = p.timespan / interval;
  const alpha = 1 - Math.exp(-interval / p.baseline);
  let base = 0;
  const rate = [], lower = [], upper = [];
  for (const [t, c] of buckets) {
    const r = c * scale;
    rate.push([t, r]);
    lower.push([t, base]);
    upper.push([t, Math.max(p.gte, p.factor * base)]);
    base += alpha * (r - base);
  }
  return { rate, lower, upper };
}


function panel(title, body, opts = {}) {
  return h("section", { class: ["panel", opts.wide ? "wide" : null], "aria-label": title },
    h("header", {}, h("h2", {}, title), opts.extra || null), body);
}

export async function render(ctx) {
  const range = Range.fromParams(ctx.params, "24h");
  const service = ctx.params.get("service") || "";
  const refresh = ctx.params.get("refresh") || "0";
  const status = h("p", { class: "updated muted", role: "status" });
  const grid = h("div", { class: "grid" }, loading("overview"));
  const svcSel = h("select", { id: "service", "aria-label": "Service" }, h("option", { value: "" }, "All services"));
  const refSel = h("select", { id: "refresh", "aria-label": "Auto-refresh" }, REFRESH.map(([v, l]) => h("option", { value: v, selected: v === refresh }, l)),
    // Any other period a URL names (whole seconds, at least 1).
    !REFRESH.some(([v]) => v === refresh) && /^[1-9]\d{0,4}$/.test(refresh) ? h("option", { value: refresh, selected: true }, refresh + " s") : null);
  svcSel.addEventListener("change", () => ctx.setParams({ service: svcSel.value }));
  refSel.addEventListener("change", () => ctx.setParams({ refresh: refSel.value === "0" ? "" : refSel.value }, { replace: true }));
  const head = h("div", { class: "page-head" },
    h("h1", {}, "Overview"),
    h("div", { class: "controls" },
      picker(range, (r) => ctx.setParams({ from: r.from, to: r.to })),
      h("label", { for: "service", class: "sr-only" }, "Service"), svcSel,
      h("label", { for: "refresh" }, "Refresh"), refSel),
    status);
  const root = h("div", { class: "overview" }, head, grid);

  let timer = null;
  let aborter = null;
  ctx.onCleanup(() => {
    clearTimeout(timer);
    if (aborter) aborter.abort();
  });

  const load = async (background) => {
    if (aborter) aborter.abort();
    aborter = new AbortController();
    const opts = { background, signal: aborter.signal };
    // Whole minutes: the collector's per-minute counts (/v1/overview)
    // answer such ranges without counting index rows.
    const now = Date.now();
    const raw = range.bounds(now);
    const t1 = Math.ceil(raw[1].getTime() / 60e3) * 60e3;
    const t0 = range.isRelative() ? t1 - (raw[1].getTime() - raw[0].getTime()) : Math.floor(raw[0].getTime() / 60e3) * 60e3;
    const abs = { from: new Date(t0).toISOString(), to: new Date(t1).toISOString() };
    const interval = niceInterval(t1 - t0, 1500, 60e3);
    const iv = intervalParam(interval);
    const svc = service ? " and " + term("service.name", service) : "";
    const q = (base) => (base ? base + svc : svc.replace(/^ and /, ""));
    const ruleP = (key) => optional("/v1/rules/" + RATE_RULES[key].rule, {}, opts).then((r) => (r.missing ? null : r.body)).catch(() => null);
    const rulesP = Promise.all([ruleP("http401"), ruleP("authz")]).then(([a, b]) => ({ http401: a, authz: b }));
    const started = performance.now();

    // Each rate chart starts five baselines earlier, so that its EWMA is
    // warm at the left edge, as the detector's is.
    const warm = 5 * 3600e3;
    const rateStats = (key) => get("/v1/stats", { q: q(RATE_RULES[key].query), from: new Date(Math.floor((t0 - warm) / interval) * interval).toISOString(), to: abs.to, interval: iv }, opts);
    // Firing points: the alert store (in memory) when the collector has
    // one, else the alert documents in the trail.
    const firing = (key) => optional("/v1/alerts", { rule: RATE_RULES[key].rule, since: abs.from, limit: 1000 }, opts).then((r) => {
      if (!r.missing) {
        return list(r.body, "alerts").filter((a) => !service || (a.group && a.group["service.name"] === service))
          .map((a) => ({ t: Date.parse(a.time), v: Number(a.count), label: fmtTime(new Date(a.time)) + ": " + (a.message || "") + (a.repeats ? " (again " + a.repeats + "× within the suppression window)" : "") }));
      }
      return get("/v1/events", { q: "event.kind:alert and event.dataset:trailguard.alert and trailguard.alert.rule_name:" + RATE_RULES[key].rule + svc, ...abs, limit: 500 }, opts).then((b) => b.hits.map((hit) => {
        const ev = hit.event || {};
        const t = Date.parse(ev["@timestamp"]);
        return { t, v: Number(valueOf(ev, "trailguard.alert.rate")), label: fmtTime(new Date(t)) + ": " + show(ev.message) };
      }));
    }).catch(() => []);
    const ov = await optional("/v1/overview", { ...abs, interval: iv, warm: "5h", service, n: 10 }, opts).catch(() => ({ missing: true }));
    if (!ctx.alive() || aborter.signal.aborted) return;
    const fromOverview = !ov.missing && ov.body.covered;
    const stats = (name) => {
      // A series of /v1/overview in the shape of a /v1/stats answer.
      const se = ov.body.series[name];
      const s0 = Date.parse(se.start);
      return Promise.resolve({ from: se.start, buckets: se.counts.map((c, k) => ({ start: new Date(s0 + k * interval).toISOString(), count: c })).filter((b) => b.count > 0) });
    };
    const tops = ov.body && ov.body.tops;
    const topOf = (name) => Promise.resolve({ top: tops[name].map((t) => ({ value: t.value, count: t.count })), hours: tops });
    const req = fromOverview ? {
      all: stats("events"),
      r401: stats("http_401"),
      r403: stats("authz_fail"),
      f401: firing("http401"),
      f403: firing("authz"),
      ok: stats("auth_success"),
      fail: stats("auth_failure"),
      topSrc: tops ? topOf("source_ip") : get("/v1/stats", { q: q(""), ...abs, top: "source.ip", n: 10 }, opts),
      topUsers: tops ? topOf("failing_users") : get("/v1/stats", { q: q("event.category:authentication and event.outcome:failure"), ...abs, top: "user.name", n: 10 }, opts),
      services: Promise.resolve({ top: ov.body.services.map((v) => ({ value: v })) }),
      alerts: optional("/v1/alerts", { status: "open", limit: 20 }, opts),
      decisions: optional("/v1/decisions", {}, opts),
    } : {
      all: get("/v1/stats", { q: q(""), ...abs, interval: iv }, opts),
      r401: rateStats("http401"),
      r403: rateStats("authz"),
      f401: firing("http401"),
      f403: firing("authz"),
      ok: get("/v1/stats", { q: q("event.category:authentication and event.outcome:success"), ...abs, interval: iv }, opts),
      fail: get("/v1/stats", { q: q("event.category:authentication and event.outcome:failure"), ...abs, interval: iv }, opts),
      topSrc: get("/v1/stats", { q: q(""), ...abs, top: "source.ip", n: 10 }, opts),
      topUsers: get("/v1/stats", { q: q("event.category:authentication and event.outcome:failure"), ...abs, top: "user.name", n: 10 }, opts),
      services: get("/v1/stats", { ...abs, top: "service.name", n: 50 }, opts),
      alerts: optional("/v1/alerts", { status: "open", limit: 20 }, opts),
      decisions: optional("/v1/decisions", {}, opts),
    };
    // The top lists may have to be counted over the index (a range older
    // than the hours the collector keeps them for: seconds at millions of
    // events); the rest is drawn as soon as it is in, and they follow.
    // (An automatic refresh keeps the panels on screen until all is in.)
    const slow = background || (fromOverview && tops) ? [] : ["topSrc", "topUsers"];
    const settle = (p) => p.then((v) => ({ v }), (e) => ({ e }));
    const settled = {};
    await Promise.all(Object.entries(req).filter(([k]) => !slow.includes(k)).map(([k, p]) => settle(p).then((r) => (settled[k] = r))));
    if (!ctx.alive() || aborter.signal.aborted) return;
    const rules = await rulesP;

    // Services for the filter.
    if (settled.services.v && svcSel.options.length === 1) {
      for (const t of settled.services.v.top || []) svcSel.append(h("option", { value: t.value, selected: t.value === service }, t.value));
      if (service && ![...svcSel.options].some((o) => o.value === service)) svcSel.append(h("option", { value: service, selected: true }, service));
    }

    const errOr = (r, fn) => (r.e ? errorBox(r.e) : fn(r.v));
    const searchHref = (query) => uiURL("/ui/search", { q: query, from: range.from, to: range.to });

    const eventsPanel = panel("Events per minute", errOr(settled.all, (st) => {
      const b = fillBuckets(st, t0, t1, interval);
      const perMin = b.map(([t, c]) => [t, (c * 60e3) / interval]);
      const total = b.reduce((a, x) => a + x[1], 0);
      return h("div", {},
        h("p", { class: "big" }, fmtNum(total), h("span", { class: "muted" }, " events")),
        partialNote(st),
        timeSeries({ title: "Events per minute", from: t0, to: t1, interval, unit: "per minute", series: [{ name: "events/min", cls: "s-events", points: perMin, area: true }],
          onPick: (a, b2) => ctx.go(uiURL("/ui/search", { q: q(""), from: new Date(a).toISOString(), to: new Date(b2).toISOString() })) }));
    }), { wide: true });

    const ratePanel = (key, stR, stF) => {
      const rr = RATE_RULES[key];
      const p = ruleParams(rules[key], rr.defaults);
      return panel(rr.title + " per " + (p.timespan === 60e3 ? "minute" : intervalParam(p.timespan)), errOr(stR, (st) => {
        const all = fillBuckets(st, Date.parse(st.from), t1, interval);
        const band = ewmaBand(all, interval, p);
        const keep = (arr) => arr.filter(([t]) => t >= t0 - interval);
        const markers = (stF.v || []).filter((m) => m.t >= t0 && m.t <= t1 && m.v >= 0);
        const count = keep(all).reduce((a, x) => a + x[1], 0);
        return h("div", {},
          h("p", { class: "big" }, h("a", { href: searchHref(q(rr.query)) }, fmtNum(count)), h("span", { class: "muted" }, " in range"), markers.length ? h("span", { class: "pill sev-high" }, markers.length + " fired") : null),
          partialNote(st),
          timeSeries({ title: rr.title, from: t0, to: t1, interval, unit: "per timespan",
            series: [{ name: rr.title.toLowerCase(), cls: key === "http401" ? "s-401" : "s-403", points: keep(band.rate) }],
            band: { lower: keep(band.lower), upper: keep(band.upper), name: "baseline → fires at max(" + p.gte + ", " + p.factor + "× baseline)" },
            markers, markerName: rr.rule + " fired",
            onPick: (a, b2) => ctx.go(uiURL("/ui/search", { q: q(rr.query), from: new Date(a).toISOString(), to: new Date(b2).toISOString() }))
          }),
          h("p", { class: "note muted" }, "Baseline: EWMA over " + intervalParam(p.baseline) + " of the rate per " + intervalParam(p.timespan) + " (" + p.source + ", " + (service ? "service " + service : "all services together") +
            "), recomputed from " + intervalParam(interval) + " counts; points are the detector's own firings."));
      }));
    };

    const authPanel = panel("Authentication: success vs failure", settled.ok.e || settled.fail.e ? errorBox(settled.ok.e || settled.fail.e) : (() => {
      const ok = fillBuckets(settled.ok.v, t0, t1, interval), fail = fillBuckets(settled.fail.v, t0, t1, interval);
      const sum = (b) => b.reduce((a, x) => a + x[1], 0);
      const so = sum(ok), sf = sum(fail);
      return h("div", {},
        h("p", { class: "big" }, h("a", { href: searchHref(q("event.category:authentication and event.outcome:success")) }, fmtNum(so)), h("span", { class: "muted" }, " succeeded · "),
          h("a", { href: searchHref(q("event.category:authentication and event.outcome:failure")), class: "bad" }, fmtNum(sf)), h("span", { class: "muted" }, " failed" + (so + sf ? " (" + ((100 * sf) / (so + sf)).toFixed(1) + " %)" : ""))),
        timeSeries({ title: "Authentication", from: t0, to: t1, interval, series: [
          { name: "success", cls: "s-ok", points: ok },
          { name: "failure", cls: "s-fail", points: fail }] }));
    })());

    const topPanel = (title, r, field, baseQ) => panel(title, errOr(r, (st) => {
      const items = (st.top || []).map((t) => ({ label: t.value, count: t.count, href: searchHref(q((baseQ ? baseQ + " and " : "") + term(field, t.value))) }));
      const note = st.hours ? h("p", { class: "note muted" }, "Counted over whole hours: " + fmtTime(new Date(st.hours.from)) + " to " + fmtTime(new Date(st.hours.to)) + (st.hours.complete ? "." : " (too many distinct values in some hours: approximate).")) : null;
      return items.length ? h("div", {}, bars(items, { title }), partialNote(st), note) : empty("Nothing in this range.");
    }));

    const alertsPanel = panel("Open alerts", (() => {
      const r = settled.alerts;
      if (r.e) return errorBox(r.e);
      if (r.v.missing) return h("p", { class: "state pending" }, "This collector does not serve alerts yet (GET /v1/alerts).");
      const items = list(r.v.body, "alerts", "items");
      if (!items.length) return empty("No open alerts.");
      return h("ul", { class: "alert-list" }, items.slice(0, 8).map((a) => h("li", {},
        h("span", { class: ["pill", "sev-" + (a.level || "medium")] }, a.level || "alert"), " ",
        h("a", { href: uiURL("/ui/alerts", { id: a.id }) }, a.title || a.rule_name || a.rule_id), " ",
        h("span", { class: "muted" }, groupText(a), " · ", fmtAgo(a.last_seen || a.time)))),
        items.length > 8 ? h("li", {}, h("a", { href: "/ui/alerts" }, "All " + items.length + " open alerts")) : null);
    })(), { extra: h("a", { href: "/ui/alerts", class: "more" }, "Alerts") });

    const blocksPanel = panel("Active blocks", (() => {
      const r = settled.decisions;
      if (r.e) return errorBox(r.e);
      if (r.v.missing) return h("p", { class: "state pending" }, "This collector does not serve block decisions yet (GET /v1/decisions).");
      const items = list(r.v.body, "decisions", "active", "items");
      if (!items.length) return empty("Nobody is blocked.");
      return h("ul", { class: "block-list" }, items.slice(0, 8).map((d) => h("li", {},
        h("code", {}, d.value), " ", h("span", { class: "muted" }, d.scenario || "", " · ", fmtDuration(Date.parse(d.until) - Date.now()), " left"))),
        items.length > 8 ? h("li", {}, h("a", { href: "/ui/blocks" }, "All " + items.length + " blocks")) : null);
    })(), { extra: h("a", { href: "/ui/blocks", class: "more" }, "Blocks") });

    const topSpecs = {
      topSrc: ["Top source addresses", "source.ip", ""],
      topUsers: ["Top failing users", "user.name", "event.category:authentication and event.outcome:failure"],
    };
    const topOrWait = (k) => {
      const [title, field, baseQ] = topSpecs[k];
      return settled[k] ? topPanel(title, settled[k], field, baseQ)
        : panel(title, loading("the top " + (k === "topSrc" ? "addresses" : "users") + ", counted over the index"));
    };
    const topEls = { topSrc: topOrWait("topSrc"), topUsers: topOrWait("topUsers") };
    replace(grid,
      eventsPanel,
      ratePanel("http401", settled.r401, settled.f401),
      ratePanel("authz", settled.r403, settled.f403),
      authPanel,
      alertsPanel,
      topEls.topSrc,
      topEls.topUsers,
      blocksPanel);
    if (slow.length) {
      delete grid.dataset.loaded;
      await Promise.all(slow.map((k) => settle(req[k]).then((r) => {
        if (!ctx.alive() || aborter.signal.aborted) return;
        settled[k] = r;
        const el = topOrWait(k);
        topEls[k].replaceWith(el);
        topEls[k] = el;
      })));
      if (!ctx.alive() || aborter.signal.aborted) return;
    }
    // Everything on screen (what the tests and benchmarks wait for).
    grid.dataset.loaded = String(Date.now());
    // For the browser benchmarks: when the data was on screen, on the
    // page's own clock (Navigation Timing's origin).
    performance.mark("tg:data");
    status.textContent = "Updated " + fmtTime(new Date()) + " in " + Math.round(performance.now() - started) + " ms" + (fromOverview ? "" : " (counted from the index)") + (range.isRelative() ? "" : " (fixed range)");
    if (Number(refSel.value) > 0 && range.isRelative()) timer = setTimeout(() => load(true), Number(refSel.value) * 1e3);
  };
  load(false).catch((e) => replace(grid, errorBox(e, () => load(false))));
  return root;
}

function partialNote(st) {
  if (!st || !st.partial) return null;
  return h("p", { class: "note warn" }, "Partial: counted from " + fmtTime(new Date(st.counted_from)) + " (scan budget reached); narrow the range for exact counts.");
}

export function groupText(a) {
  const g = a.group || {};
  const parts = Object.entries(g).map(([k, v]) => k + "=" + v);
  return parts.join(" ") || (a.fields && (a.fields["client.ip"] || a.fields["source.ip"])) || "";
}

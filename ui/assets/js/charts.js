// Charts drawn as SVG by our own code: time series with a baseline band and
// markers, histograms over time, horizontal bars, sparklines. Every label
// is a text node; sizes follow the container (redrawn on resize); charts
// take the keyboard (arrows move a cursor over the buckets, read out by a
// live region) as well as the mouse.

import { h, s, clear, fmtNum } from "./dom.js";
import { fmtShort, fmtTime } from "./time.js";

const PAD = { l: 44, r: 12, t: 10, b: 24 };

// fillBuckets turns the collector's stats buckets (only those with events)
// into one [t, count] per interval from `from` to `to`, zeros included; the
// collector aligns buckets on multiples of the interval since the epoch.
export function fillBuckets(st, from, to, interval) {
  const have = new Map();
  for (const b of (st && st.buckets) || []) have.set(Date.parse(b.start), b.count);
  const out = [];
  for (let t = Math.floor(from / interval) * interval; t < to; t += interval) out.push([t, have.get(t) || 0]);
  return out;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function ticks(max, n = 4) {
  const out = [];
  for (let i = 0; i <= n; i++) out.push((max * i) / n);
  return out;
}

function timeTicks(t0, t1, width) {
  const n = Math.max(2, Math.min(8, Math.floor(width / 110)));
  const span = t1 - t0;
  const steps = [60e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 172800e3, 604800e3];
  let step = steps.find((st) => span / st <= n) || steps[steps.length - 1];
  if (span < 60e3 * n) step = Math.max(1e3, Math.ceil(span / n / 1e3) * 1e3);
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

// responsive draws into a container at its width, again when it changes.
function responsive(container, draw) {
  let last = 0;
  const redraw = () => {
    const w = Math.max(260, Math.floor(container.clientWidth || 800));
    if (w === last) return;
    last = w;
    draw(w);
  };
  if (typeof ResizeObserver !== "undefined") {
    const ro = new ResizeObserver(() => requestAnimationFrame(redraw));
    ro.observe(container);
  }
  requestAnimationFrame(redraw);
  draw(Math.max(260, Math.floor(container.clientWidth || 800)));
}

// timeSeries: opts = {title, from, to (ms), interval (ms), height,
//   series: [{name, cls, points: [[t, v]…]}],
//   band: {lower: [[t, v]…], upper: [[t, v]…], name}, threshold: {points, name},
//   markers: [{t, v, label}], unit, onPick(t0, t1)}
export function timeSeries(opts) {
  const wrap = h("figure", { class: "chart" });
  const live = h("div", { class: "chart-tip", role: "status", "aria-live": "polite" });
  const legend = h("figcaption", { class: "legend" },
    opts.series.map((se) => h("span", { class: ["key", se.cls] }, h("span", { class: "swatch", "aria-hidden": "true" }), se.name)),
    opts.band ? h("span", { class: "key band" }, h("span", { class: "swatch", "aria-hidden": "true" }), opts.band.name) : null,
    opts.markers && opts.markers.length ? h("span", { class: "key marker" }, h("span", { class: "swatch", "aria-hidden": "true" }), opts.markerName || "alerts") : null);
  const box = h("div", { class: "chart-box" });
  wrap.append(box, live, legend);
  const all = [];
  for (const se of opts.series) for (const p of se.points) all.push(p[1]);
  if (opts.band) for (const p of opts.band.upper) all.push(p[1]);
  for (const m of opts.markers || []) all.push(m.v);
  const total = opts.series.length ? opts.series[0].points.reduce((a, p) => a + p[1], 0) : 0;
  const peak = Math.max(0, ...opts.series.flatMap((se) => se.points.map((p) => p[1])));
  const summary = (opts.title || "chart") + ": " + opts.series.map((se) => se.name).join(", ") +
    " from " + fmtTime(new Date(opts.from)) + " to " + fmtTime(new Date(opts.to)) + "; peak " + fmtNum(peak) + (opts.unit ? " " + opts.unit : "") +
    (opts.totalLabel ? "; " + opts.totalLabel(total) : "");
  const height = opts.height || 180;

  responsive(box, (width) => {
    clear(box);
    const W = width, H = height;
    const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
    const t0 = opts.from, t1 = opts.to;
    const ymax = niceMax(Math.max(...all, 0) * 1.05);
    const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * iw;
    const y = (v) => PAD.t + ih - (v / ymax) * ih;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, tabindex: "0", class: "ts" });
    const grid = s("g", { class: "grid", "aria-hidden": "true" });
    for (const v of ticks(ymax)) {
      grid.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
      grid.append(s("text", { x: PAD.l - 6, y: y(v) + 4, class: "ylabel", "text-anchor": "end" }, fmtNum(v)));
    }
    for (const t of timeTicks(t0, t1, iw)) {
      grid.append(s("text", { x: x(t), y: H - 6, class: "xlabel", "text-anchor": "middle" }, fmtShort(new Date(t), t1 - t0)));
    }
    svg.append(grid);
    if (opts.band && opts.band.upper.length) {
      const up = opts.band.upper, lo = opts.band.lower;
      let d = "M" + up.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join("L");
      d += "L" + lo.slice().reverse().map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join("L") + "Z";
      svg.append(s("path", { d, class: "band" }));
      svg.append(s("path", { d: "M" + up.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join("L"), class: "threshold" }));
      svg.append(s("path", { d: "M" + lo.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join("L"), class: "baseline" }));
    }
    for (const se of opts.series) {
      if (!se.points.length) continue;
      const d = "M" + se.points.map((p) => x(p[0] + (opts.interval || 0) / 2).toFixed(1) + "," + y(p[1]).toFixed(1)).join("L");
      if (se.area) {
        const first = se.points[0][0] + (opts.interval || 0) / 2, last = se.points[se.points.length - 1][0] + (opts.interval || 0) / 2;
        svg.append(s("path", { d: d + `L${x(last).toFixed(1)},${y(0)}L${x(first).toFixed(1)},${y(0)}Z`, class: ["area", se.cls] }));
      }
      svg.append(s("path", { d, class: ["line", se.cls] }));
    }
    for (const m of opts.markers || []) {
      const c = s("circle", { cx: x(m.t), cy: y(m.v), r: 5, class: "marker" });
      c.append(s("title", {}, m.label));
      svg.append(c);
    }
    // Cursor for mouse and keyboard.
    const cursor = s("line", { class: "cursor", y1: PAD.t, y2: PAD.t + ih, x1: -10, x2: -10 });
    svg.append(cursor);
    const base = opts.series[0] ? opts.series[0].points : [];
    let idx = -1;
    const show = (i) => {
      if (!base.length) return;
      idx = Math.max(0, Math.min(base.length - 1, i));
      const t = base[idx][0];
      const cx = x(t + (opts.interval || 0) / 2);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      const parts = [fmtTime(new Date(t))];
      for (const se of opts.series) {
        const p = se.points[idx];
        if (p) parts.push(se.name + ": " + fmtNum(p[1]));
      }
      if (opts.band) {
        const up = opts.band.upper[idx], lo = opts.band.lower[idx];
        if (lo) parts.push("baseline: " + fmtNum(lo[1]));
        if (up) parts.push("fires at: " + fmtNum(up[1]));
      }
      live.textContent = parts.join(" · ");
    };
    svg.addEventListener("mousemove", (ev) => {
      const r = svg.getBoundingClientRect();
      const t = t0 + ((ev.clientX - r.left - PAD.l) / iw) * (t1 - t0);
      let best = 0;
      for (let i = 0; i < base.length; i++) if (Math.abs(base[i][0] - t) < Math.abs(base[best][0] - t)) best = i;
      show(best);
    });
    svg.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight") show(idx + 1);
      else if (ev.key === "ArrowLeft") show(idx < 0 ? base.length - 1 : idx - 1);
      else if (ev.key === "Home") show(0);
      else if (ev.key === "End") show(base.length - 1);
      else if (ev.key === "Enter" && opts.onPick && idx >= 0) opts.onPick(base[idx][0], base[idx][0] + opts.interval);
      else return;
      ev.preventDefault();
    });
    if (opts.onPick) {
      svg.classList.add("pickable");
      svg.addEventListener("click", () => {
        if (idx >= 0) opts.onPick(base[idx][0], base[idx][0] + opts.interval);
      });
    }
    box.append(svg);
  });
  return wrap;
}

// histogram: bars over time. opts = {title, from, to, interval, buckets:
// [[t, count]…], onPick(t0, t1)}.
export function histogram(opts) {
  const wrap = h("figure", { class: "chart histogram" });
  const live = h("div", { class: "chart-tip", role: "status", "aria-live": "polite" });
  const box = h("div", { class: "chart-box" });
  wrap.append(box, live);
  const total = opts.buckets.reduce((a, b) => a + b[1], 0);
  const summary = (opts.title || "histogram") + ": " + fmtNum(total) + " events from " + fmtTime(new Date(opts.from)) + " to " + fmtTime(new Date(opts.to));
  responsive(box, (W) => {
    clear(box);
    const H = opts.height || 110;
    const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
    const t0 = opts.from, t1 = opts.to;
    const ymax = niceMax(Math.max(0, ...opts.buckets.map((b) => b[1])));
    const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * iw;
    const y = (v) => PAD.t + ih - (v / ymax) * ih;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, tabindex: "0", class: "hist" });
    const grid = s("g", { class: "grid", "aria-hidden": "true" });
    for (const v of ticks(ymax, 2)) {
      grid.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
      grid.append(s("text", { x: PAD.l - 6, y: y(v) + 4, class: "ylabel", "text-anchor": "end" }, fmtNum(v)));
    }
    for (const t of timeTicks(t0, t1, iw)) grid.append(s("text", { x: x(t), y: H - 6, class: "xlabel", "text-anchor": "middle" }, fmtShort(new Date(t), t1 - t0)));
    svg.append(grid);
    const bw = Math.max(1, (opts.interval / (t1 - t0)) * iw - 1);
    const bars = [];
    opts.buckets.forEach(([t, c], i) => {
      const r = s("rect", { x: x(t), y: y(c), width: bw, height: Math.max(0, y(0) - y(c)), class: "bar", dataset: { i } });
      r.append(s("title", {}, fmtTime(new Date(t)) + ": " + fmtNum(c)));
      bars.push(r);
      svg.append(r);
    });
    let idx = -1;
    const show = (i) => {
      if (!opts.buckets.length) return;
      if (idx >= 0 && bars[idx]) bars[idx].classList.remove("active");
      idx = Math.max(0, Math.min(opts.buckets.length - 1, i));
      bars[idx].classList.add("active");
      const [t, c] = opts.buckets[idx];
      live.textContent = fmtTime(new Date(t)) + " · " + fmtNum(c) + " events" + (opts.onPick ? " (Enter to zoom in)" : "");
    };
    svg.addEventListener("mousemove", (ev) => {
      const i = ev.target && ev.target.dataset ? Number(ev.target.dataset.i) : NaN;
      if (!Number.isNaN(i)) show(i);
    });
    svg.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight") show(idx + 1);
      else if (ev.key === "ArrowLeft") show(idx < 0 ? opts.buckets.length - 1 : idx - 1);
      else if (ev.key === "Enter" && opts.onPick && idx >= 0) opts.onPick(opts.buckets[idx][0], opts.buckets[idx][0] + opts.interval);
      else return;
      ev.preventDefault();
    });
    if (opts.onPick) {
      svg.classList.add("pickable");
      svg.addEventListener("click", (ev) => {
        const i = ev.target && ev.target.dataset ? Number(ev.target.dataset.i) : NaN;
        if (!Number.isNaN(i)) opts.onPick(opts.buckets[i][0], opts.buckets[i][0] + opts.interval);
      });
    }
    box.append(svg);
  });
  return wrap;
}

// bars: a ranked list with horizontal bars. items = [{label, count, href}].
export function bars(items, opts = {}) {
  const max = Math.max(1, ...items.map((i) => i.count));
  const list = h("ol", { class: "bars", "aria-label": opts.title || "ranking" });
  for (const it of items) {
    const w = Math.max(1, Math.round((it.count / max) * 100));
    const label = it.href ? h("a", { href: it.href, class: "bar-label", title: it.label }, it.label) : h("span", { class: "bar-label", title: it.label }, it.label);
    const svg = s("svg", { class: "bar-svg", viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true" },
      s("rect", { x: 0, y: 0, width: w, height: 10, class: "bar" }));
    list.append(h("li", {}, label, svg, h("span", { class: "bar-count" }, fmtNum(it.count))));
  }
  return list;
}

// sparkline: a small line of values (newest last).
export function sparkline(values, opts = {}) {
  const W = opts.width || 120, H = opts.height || 28;
  const max = Math.max(1, ...values);
  const n = Math.max(1, values.length - 1);
  const pts = values.map((v, i) => ((i / n) * (W - 2) + 1).toFixed(1) + "," + (H - 2 - (v / max) * (H - 4)).toFixed(1));
  return s("svg", { class: ["spark", opts.cls], width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": (opts.label || "trend") + ": " + values.map(fmtNum).join(", ") },
    s("polyline", { points: pts.join(" ") }));
}

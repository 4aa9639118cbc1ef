// Inline SVG charts: drawn from data with the DOM, no library, no script
// from elsewhere.
import { h, s, day } from "./dom.js";

// dailyChart draws water per day: consumption as bars (from telemetry) and
// credit issued as a second bar series, with the running credit balance as
// a line when the data has one. days is [{date: "YYYY-MM-DD",
// consumption?: litres, credit?: litres, balance?: litres}], oldest first.
export function dailyChart(days, opts = {}) {
  const W = 720, H = 260, L = 52, R = 12, T = 12, B = 34;
  const pw = W - L - R, ph = H - T - B;
  const hasCons = days.some(d => d.consumption != null);
  const hasCredit = days.some(d => d.credit);
  const hasBal = days.some(d => d.balance != null);
  const max = Math.max(1, ...days.map(d => Math.max(d.consumption || 0, d.credit || 0, d.balance || 0)));
  const top = niceCeil(max);
  const n = Math.max(days.length, 1);
  const slot = pw / n;
  const series = (hasCons ? 1 : 0) + (hasCredit ? 1 : 0);
  const bw = Math.max(2, Math.min(22, slot * 0.8 / Math.max(series, 1)));
  const y = v => T + ph - (v / top) * ph;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": opts.id ? opts.id + "-title" : undefined, id: opts.id },
    s("title", { id: opts.id ? opts.id + "-title" : undefined }, opts.title || "Water per day"));
  for (let i = 0; i <= 4; i++) {
    const v = top * i / 4;
    svg.append(s("line", { class: i ? "grid" : "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtL(v)));
  }
  const every = Math.ceil(n / 10);
  days.forEach((d, i) => {
    const x0 = L + i * slot + (slot - bw * series) / 2;
    let k = 0;
    if (hasCons) {
      const v = d.consumption || 0;
      svg.append(s("rect", { class: "bar-consumption", x: x0 + bw * k++, y: y(v), width: bw, height: Math.max(0, T + ph - y(v)), "data-date": d.date, "data-litres": v },
        s("title", {}, `${d.date}: ${fmtL(v)} used`)));
    }
    if (hasCredit) {
      const v = d.credit || 0;
      svg.append(s("rect", { class: "bar-credit", x: x0 + bw * k++, y: y(v), width: bw, height: Math.max(0, T + ph - y(v)), "data-date": d.date, "data-litres": v },
        s("title", {}, `${d.date}: ${fmtL(v)} credit issued`)));
    }
    // Every few days, and always the last (today).
    if ((i % every === 0 && n - 1 - i >= every / 2) || i === n - 1) svg.append(s("text", { x: L + i * slot + slot / 2, y: H - 14, "text-anchor": "middle" }, d.date.slice(5)));
  });
  if (hasBal) {
    const pts = days.map((d, i) => d.balance == null ? null : [L + i * slot + slot / 2, y(d.balance)]).filter(Boolean);
    svg.append(s("polyline", { class: "line-credit", points: pts.map(p => p.join(",")).join(" ") }));
    for (const [cx, cy] of pts) svg.append(s("circle", { class: "pt-credit", cx, cy, r: 3 }));
  }
  const legend = h("div", { class: "legend" },
    hasCons ? h("span", {}, h("i", { class: "sw-consumption" }), "Consumption") : null,
    hasCredit ? h("span", {}, h("i", { class: "sw-credit" }), "Credit issued") : null,
    hasBal ? h("span", {}, h("i", { class: "sw-balance" }), "Credit left on the meter") : null);
  return h("figure", { class: "chart-figure" }, svg, legend);
}

// lastDays returns the dates of the n days up to today (UTC), oldest first.
export function lastDays(n, now = new Date()) {
  const out = [];
  for (let i = n - 1; i >= 0; i--) out.push(day(new Date(now.getTime() - i * 86400000)));
  return out;
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtL(v) {
  return v >= 1000 ? (v / 1000).toLocaleString("en", { maximumFractionDigits: 1 }) + " kl" : Math.round(v) + " l";
}

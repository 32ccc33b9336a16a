// Small inline-SVG charts (no libraries: the page must work offline).
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (Math.abs(v) >= 1000) return (v / 1000).toFixed(1) + "k";
  if (Math.abs(v) >= 10 || Number.isInteger(v)) return String(Math.round(v));
  return v.toPrecision(2);
}

// series: [{name, points: [[t, v], ...]}]; returns an <svg> with axes and a legend.
function lineChart(series, opts = {}) {
  const W = 460, H = 170, L = 54, R = 8, T = 8, B = 34;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const all = series.flatMap(s => s.points);
  if (!all.length) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted" }, "no data yet"));
    return svg;
  }
  const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]), t0 + 1);
  const lo = Math.min(0, ...all.map(p => p[1]));
  const hi = opts.max !== undefined ? opts.max : niceMax(Math.max(...all.map(p => p[1])));
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - (v - lo) / ((hi - lo) || 1));
  for (const frac of [0, 0.5, 1]) {
    const v = lo + (hi - lo) * frac;
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(svgEl("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" },
      opts.percent ? Math.round(v * 100) + "%" : fmt(v)));
  }
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    const lx = L + 120 * (i % 3), ly = H - 16 + 12 * Math.floor(i / 3);
    svg.appendChild(svgEl("rect", { x: lx, y: ly - 8, width: 10, height: 10, fill: color }));
    svg.appendChild(svgEl("text", { x: lx + 14, y: ly + 1, class: "legend" }, s.name));
  });
  return svg;
}

// rows: [{label, value, text}] drawn as horizontal bars against `max`.
function barChart(rows, max) {
  const W = 460, row = 22, L = 120;
  const H = Math.max(row * rows.length + 4, 24);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart bars", role: "img" });
  if (!rows.length) {
    svg.appendChild(svgEl("text", { x: W / 2, y: 16, "text-anchor": "middle", class: "muted" }, "no data yet"));
    return svg;
  }
  const top = max || niceMax(Math.max(...rows.map(r => r.value)));
  rows.forEach((r, i) => {
    const yy = 2 + i * row, w = Math.max(0, (W - L - 60) * Math.min(r.value / top, 1));
    svg.appendChild(svgEl("text", { x: L - 6, y: yy + 14, "text-anchor": "end", class: "legend" }, r.label));
    svg.appendChild(svgEl("rect", { x: L, y: yy + 3, width: W - L - 60, height: 14, class: "track" }));
    svg.appendChild(svgEl("rect", { x: L, y: yy + 3, width: w, height: 14,
      fill: PALETTE[i % PALETTE.length] }));
    svg.appendChild(svgEl("text", { x: W - 54, y: yy + 14, class: "legend" }, r.text ?? fmt(r.value)));
  });
  return svg;
}

window.TurnoutCharts = { lineChart, barChart };
})();

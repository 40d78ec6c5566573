// Small SVG charts drawn by hand: the emotion timeline of a call and horizontal bar charts (hotspots).
import { EMOTION_COLOR, zh } from "./util.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// points: [{start, end, label, confidence}] in seconds from the start of the call.
export function emotionTimeline(points, { width = 560, height = 70 } = {}) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "timeline", role: "img",
                         "aria-label": "情绪时间线" });
  const pad = 4, axis = 16, plotH = height - axis - pad;
  const end = Math.max(10, ...points.map((p) => p.end || 0));
  const x = (t) => pad + (t / end) * (width - 2 * pad);
  svg.append(s("rect", { x: pad, y: pad, width: width - 2 * pad, height: plotH, fill: "#f3f5f8", rx: 3 }));
  for (const p of points) {
    const conf = p.confidence ?? 1;
    const hgt = Math.max(6, plotH * (0.35 + 0.65 * conf));
    const r = s("rect", { x: x(p.start), y: pad + plotH - hgt, width: Math.max(2, x(p.end) - x(p.start)), height: hgt,
                          fill: EMOTION_COLOR[p.label] || "#999", rx: 2, "data-label": p.label });
    r.append(s("title", {}, `${zh.emotion(p.label)} ${Math.round(conf * 100)}%（${p.start.toFixed(1)}–${p.end.toFixed(1)} 秒）`));
    svg.append(r);
  }
  const step = end > 120 ? 30 : end > 40 ? 10 : 5;
  for (let t = 0; t <= end; t += step) {
    svg.append(s("text", { x: x(t), y: height - 3, "font-size": 10, fill: "#667", "text-anchor": "middle" }, `${t}s`));
  }
  return svg;
}

// data: {label: count}; labelOf: key -> display text. Biggest first, at most `max` bars.
export function barChart(data, { labelOf = (k) => k, max = 8, width = 360, color = "#3b6fd6", title = "" } = {}) {
  const rows = Object.entries(data || {}).filter(([, v]) => Number(v) > 0).sort((a, b) => b[1] - a[1]).slice(0, max);
  const rowH = 22, labelW = 96, numW = 36;
  const height = Math.max(rowH, rows.length * rowH) + 4;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "bars", role: "img", "aria-label": title });
  if (!rows.length) {
    svg.append(s("text", { x: 4, y: 16, "font-size": 12, fill: "#667" }, "暂无数据"));
    return svg;
  }
  const top = rows[0][1];
  rows.forEach(([k, v], i) => {
    const y = 2 + i * rowH;
    const w = ((width - labelW - numW) * v) / top;
    svg.append(s("text", { x: labelW - 6, y: y + 15, "font-size": 12, "text-anchor": "end", fill: "#223" }, labelOf(k)));
    svg.append(s("rect", { x: labelW, y: y + 3, width: Math.max(2, w), height: rowH - 8, fill: color, rx: 2,
                           "data-key": k }));
    svg.append(s("text", { x: labelW + w + 4, y: y + 15, "font-size": 12, fill: "#223" }, String(v)));
  });
  return svg;
}

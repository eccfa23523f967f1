// Small SVG charts for the planner page: a line chart (log or linear axes, interval bands, marked
// points and lines, a legend) and a stacked bar. No library: the page works offline.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function svgText(parent, x, y, text, attrs) {
  const node = svgEl("text", Object.assign({ x, y }, attrs || {}), parent);
  node.textContent = text;
  return node;
}

// Ticks: powers of ten on a log axis (1-2-5 steps over three decades or less), else round steps
// (also for a log axis spanning less than a decade).
function ticks(lo, hi, log) {
  if (log && hi / lo > 10) {
    const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
    const steps = b - a <= 3 ? [1, 2, 5] : [1];
    const out = [];
    for (let e = a; e <= b; e++) for (const m of steps) {
      const v = m * Math.pow(10, e);
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
    const stride = Math.ceil(out.length / 7);
    return out.filter((_, i) => i % stride === 0);
  }
  const raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toPrecision(12));
  return out;
}

// spec: {x: {log, label, format, domain?}, y: {label, format, domain?},
//        series: [{x, y, color, width, dash, label, band: {low, high}}],
//        points: [{x, y, color, label, r}], vlines: [{x, color, dash, label}], hlines: [...]}
function lineChart(svg, spec) {
  svg.replaceChildren();
  const box = svg.viewBox.baseVal, W = box.width, H = box.height;
  const items = [...spec.series, ...(spec.vlines || []), ...(spec.hlines || [])]
    .map(item => ({ label: item.label, color: item.color, dash: item.dash }))
    .concat((spec.points || []).map(item => ({ label: item.label, color: item.color, point: true })))
    .filter(item => item.label);
  const rows = Math.ceil(items.length / 2);  // the legend: two items a row, under the x axis
  const m = { left: 52, right: 22, top: 10, bottom: 42 + 15 * rows };
  const xs = [], ys = [];
  for (const s of spec.series) s.x.forEach((x, i) => {
    if (s.y[i] !== null && x !== null) { xs.push(x); ys.push(s.y[i]); }
  });
  for (const p of spec.points || []) { xs.push(p.x); ys.push(p.y); }
  if (!xs.length) { svgText(svg, W / 2, H / 2, spec.empty || "nothing to draw", { "text-anchor": "middle" }); return; }
  const [x0, x1] = spec.x.domain || [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = spec.y.domain || [Math.min(...ys), Math.max(...ys)];
  const pad = (y1 - y0) * 0.06 || 0.01; y0 -= pad; y1 += pad;
  const fx = spec.x.log ? v => Math.log10(v) : v => v;
  const X = v => m.left + (fx(v) - fx(x0)) / (fx(x1) - fx(x0)) * (W - m.left - m.right);
  const Y = v => H - m.bottom - (v - y0) / (y1 - y0) * (H - m.top - m.bottom);

  const clipId = svg.id + "-clip";
  const clip = svgEl("clipPath", { id: clipId }, svgEl("defs", {}, svg));
  svgEl("rect", { x: m.left, y: m.top, width: W - m.left - m.right, height: H - m.top - m.bottom }, clip);

  const axis = svgEl("g", { class: "axis" }, svg);
  for (const t of ticks(x0, x1, spec.x.log)) {
    svgEl("line", { class: "grid", x1: X(t), x2: X(t), y1: m.top, y2: H - m.bottom }, axis);
    svgText(axis, X(t), H - m.bottom + 14, spec.x.format(t), { "text-anchor": "middle" });
  }
  for (const t of ticks(y0, y1, false)) {
    svgEl("line", { class: "grid", x1: m.left, x2: W - m.right, y1: Y(t), y2: Y(t) }, axis);
    svgText(axis, m.left - 6, Y(t) + 4, spec.y.format(t), { "text-anchor": "end" });
  }
  svgEl("path", { d: `M${m.left},${m.top}V${H - m.bottom}H${W - m.right}`, fill: "none" }, axis);
  svgText(axis, (m.left + W - m.right) / 2, H - m.bottom + 30, spec.x.label, { "text-anchor": "middle" });
  svgText(axis, 12, (m.top + H - m.bottom) / 2, spec.y.label,
          { "text-anchor": "middle", transform: `rotate(-90 12 ${(m.top + H - m.bottom) / 2})` });

  const plot = svgEl("g", { "clip-path": `url(#${clipId})` }, svg);
  const path = (x, y) => {
    let d = "", pen = false;
    x.forEach((v, i) => {
      if (y[i] === null || v === null) { pen = false; return; }
      d += `${pen ? "L" : "M"}${X(v).toFixed(1)},${Y(y[i]).toFixed(1)}`; pen = true;
    });
    return d;
  };
  for (const s of spec.series) if (s.band) {  // the interval: along the top, back along the bottom
    const idx = s.x.map((_, i) => i).filter(i => s.band.low[i] !== null && s.band.high[i] !== null);
    const outline = idx.map(i => [s.x[i], s.band.high[i]])
      .concat(idx.slice().reverse().map(i => [s.x[i], s.band.low[i]]));
    if (idx.length > 1) svgEl("path", {
      d: "M" + outline.map(([a, b]) => `${X(a).toFixed(1)},${Y(b).toFixed(1)}`).join("L") + "Z",
      fill: s.color, "fill-opacity": 0.14, stroke: "none" }, plot);
  }
  for (const line of spec.vlines || []) svgEl("line", { x1: X(line.x), x2: X(line.x), y1: m.top, y2: H - m.bottom,
    stroke: line.color, "stroke-width": 1.2, "stroke-dasharray": line.dash || "" }, plot);
  for (const line of spec.hlines || []) svgEl("line", { x1: m.left, x2: W - m.right, y1: Y(line.y), y2: Y(line.y),
    stroke: line.color, "stroke-width": 1.2, "stroke-dasharray": line.dash || "" }, plot);
  for (const s of spec.series) svgEl("path", { d: path(s.x, s.y), fill: "none", stroke: s.color,
    "stroke-width": s.width || 2, "stroke-dasharray": s.dash || "" }, plot);
  for (const p of spec.points || []) svgEl("circle", { cx: X(p.x), cy: Y(p.y), r: p.r || 4.5, fill: p.color,
    stroke: "#fff", "stroke-width": 1.5 }, plot);

  const legend = svgEl("g", {}, svg);
  items.forEach((item, i) => {
    const lx = m.left + (i % 2) * (W - m.left - m.right) / 2, y = H - 15 * rows + 15 * Math.floor(i / 2) + 2;
    if (item.point) {
      svgEl("circle", { cx: lx + 7, cy: y - 4, r: 4, fill: item.color }, legend);
    } else {
      svgEl("line", { x1: lx, x2: lx + 14, y1: y - 4, y2: y - 4, stroke: item.color, "stroke-width": 2,
        "stroke-dasharray": item.dash || "" }, legend);
    }
    svgText(legend, lx + 20, y, item.label, { class: "title" });
  });
}

// parts: [{label, value, color}] -> one horizontal bar split in proportion, labels underneath: in a
// row, or one a line where the figure is narrower than 600 px (a phone), so the text stays legible.
function stackedBar(svg, parts, total, format) {
  svg.replaceChildren();
  const narrow = svg.clientWidth > 0 && svg.clientWidth < 600;
  const W = narrow ? 400 : 940, H = narrow ? 64 + 18 * parts.length : 86;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const left = 8, right = 8, width = W - left - right;
  let x = left;
  const shown = parts.filter(p => p.value > 0);
  for (const p of shown) {
    const w = Math.max(p.value / total * width, 1);
    svgEl("rect", { x, y: 8, width: w, height: 26, fill: p.color, rx: 2 }, svg);
    x += w;
  }
  let lx = left, ly = 50;
  for (const p of parts) {
    svgEl("rect", { x: lx, y: ly, width: 10, height: 10, fill: p.color, rx: 2 }, svg);
    const label = `${p.label}: ${format(p.value)} (${(100 * p.value / total).toFixed(1)}%)`;
    svgText(svg, lx + 15, ly + 9, label, { class: "title" });
    if (narrow) ly += 18; else lx += 30 + 6.6 * label.length;
  }
  svgText(svg, left, narrow ? ly + 12 : 80, `total ${format(total)} FLOPs`, {});
}

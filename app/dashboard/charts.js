// Line charts as inline SVG: no outside assets, so the page works offline.

const NS = "http://www.w3.org/2000/svg";
const W = 300, H = 150, LEFT = 44, RIGHT = 10, TOP = 22, BOTTOM = 26;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function label(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/**
 * One series against epoch: `points` is [[epoch, value], ...]; `epochs` sets the x axis, so
 * the line grows across the chart as a job trains.
 */
export function lineChart(title, points, epochs, colour) {
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  chart.append(svg("text", { x: LEFT, y: 14, class: "chart-title" }, title));
  const x1 = Math.max(1, epochs);
  const values = points.map((p) => p[1]).filter(Number.isFinite);
  let lo = values.length ? Math.min(...values) : 0, hi = values.length ? Math.max(...values) : 1;
  if (hi - lo < 1e-9) { lo -= 0.5 * Math.abs(lo || 1) * 0.1; hi += 0.5 * Math.abs(hi || 1) * 0.1; }
  const px = (e) => LEFT + ((e - 1) / Math.max(1, x1 - 1)) * (W - LEFT - RIGHT) * (x1 > 1 ? 1 : 0);
  const py = (v) => TOP + (1 - (v - lo) / (hi - lo)) * (H - TOP - BOTTOM);
  chart.append(svg("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM, class: "axis" }));
  chart.append(svg("line", { x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM, class: "axis" }));
  chart.append(svg("text", { x: LEFT - 4, y: TOP + 4, class: "tick", "text-anchor": "end" }, label(hi)));
  chart.append(svg("text", { x: LEFT - 4, y: H - BOTTOM, class: "tick", "text-anchor": "end" }, label(lo)));
  chart.append(svg("text", { x: LEFT, y: H - 8, class: "tick" }, "epoch 1"));
  chart.append(svg("text", { x: W - RIGHT, y: H - 8, class: "tick", "text-anchor": "end" }, `${x1}`));
  const shown = points.filter((p) => Number.isFinite(p[1]));
  if (shown.length) {
    chart.append(svg("polyline", { points: shown.map(([e, v]) => `${px(e).toFixed(1)},${py(v).toFixed(1)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2, class: "series" }));
    for (const [e, v] of shown) {
      const dot = svg("circle", { cx: px(e).toFixed(1), cy: py(v).toFixed(1), r: 3, fill: colour, class: "point" });
      dot.append(svg("title", {}, `epoch ${e}: ${label(v)}`));
      chart.append(dot);
    }
  } else {
    chart.append(svg("text", { x: W / 2, y: H / 2, class: "tick", "text-anchor": "middle" }, "waiting for the first epoch"));
  }
  return chart;
}

// The map viewer: the photo on a canvas with the crack map's tiles over it.
// Zoom (wheel, buttons), pan (drag), hover for a tile's probabilities, and a threshold
// that recolours from the tiles already loaded, with no request.

const MAX_ZOOM = 8; // screen pixels per photo pixel

/** The crack map's tiles as typed arrays (N = rows * cols, row-major: tile i is at row
 * floor(i / cols), col i % cols, as the API lists them). */
export function tileArrays(map, tiles) {
  const n = tiles.length;
  const classes = map.model.classes;
  const x = new Int32Array(n), y = new Int32Array(n), w = new Int32Array(n), h = new Int32Array(n);
  const defect = new Float32Array(n);
  const probs = new Float32Array(n * classes.length);
  tiles.forEach((t, i) => {
    x[i] = t.x; y[i] = t.y; w[i] = t.w; h[i] = t.h;
    defect[i] = t.defect_prob;
    classes.forEach((c, k) => { probs[i * classes.length + k] = t.probs[c]; });
  });
  return { n, x, y, w, h, defect, probs, classes, rows: map.tiling.rows, cols: map.tiling.cols };
}

/** Tiles per class (the most probable class) and defect tiles at `threshold`. */
export function countTiles(tiles, threshold) {
  const C = tiles.classes.length;
  const perClass = Object.fromEntries(tiles.classes.map((c) => [c, 0]));
  let defects = 0;
  for (let i = 0; i < tiles.n; i++) {
    let best = 0;
    for (let k = 1; k < C; k++) if (tiles.probs[i * C + k] > tiles.probs[i * C + best]) best = k;
    perClass[tiles.classes[best]] += 1;
    if (tiles.defect[i] >= threshold) defects += 1;
  }
  return { perClass, defects, total: tiles.n };
}

function heat(p) {
  // yellow (at the threshold) to red (certain)
  const g = Math.round(200 * (1 - p));
  return `rgb(230,${g},20)`;
}

export class MapViewer {
  constructor(canvas, tooltip) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.ctx = canvas.getContext("2d");
    this.photo = null;
    this.tiles = null;
    this.size = null; // the photo's {width, height} in map pixels
    this.threshold = 0.5;
    this.view = { scale: 1, ox: 0, oy: 0 };
    this.pending = false;
    this.drag = null;
    this.onHover = null;
    canvas.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", (e) => this.up(e));
    canvas.addEventListener("pointerleave", () => this.hideTooltip());
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
  }

  /** Show a map: the photo (an ImageBitmap, any scale) and its tiles (tileArrays). */
  show(photo, size, tiles, threshold) {
    this.photo = photo;
    this.size = size;
    this.tiles = tiles;
    this.threshold = threshold;
    this.resize();
    this.fit();
  }

  clear() {
    this.photo = null;
    this.tiles = null;
    this.hideTooltip();
    this.redraw();
  }

  setThreshold(t) {
    this.threshold = t;
    this.redraw();
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.cssWidth = Math.max(100, box.width);
    this.cssHeight = Math.max(100, box.height);
    this.canvas.width = Math.round(this.cssWidth * dpr);
    this.canvas.height = Math.round(this.cssHeight * dpr);
    this.canvas.style.width = `${this.cssWidth}px`;
    this.canvas.style.height = `${this.cssHeight}px`;
    this.redraw();
  }

  fitScale() {
    if (!this.size) return 1;
    return Math.min(this.cssWidth / this.size.width, this.cssHeight / this.size.height);
  }

  fit() {
    const s = this.fitScale();
    this.view = {
      scale: s,
      ox: (this.cssWidth - s * this.size.width) / 2,
      oy: (this.cssHeight - s * this.size.height) / 2,
    };
    this.redraw();
  }

  /** Zoom by `factor` around the canvas point (cx, cy) (CSS pixels). */
  zoom(factor, cx = this.cssWidth / 2, cy = this.cssHeight / 2) {
    if (!this.size) return;
    const v = this.view;
    const scale = Math.min(MAX_ZOOM, Math.max(this.fitScale() / 2, v.scale * factor));
    const f = scale / v.scale;
    this.view = { scale, ox: cx - (cx - v.ox) * f, oy: cy - (cy - v.oy) * f };
    this.redraw();
  }

  zoomLevel() {
    return this.size ? this.view.scale / this.fitScale() : 1;
  }

  wheel(event) {
    event.preventDefault();
    const r = this.canvas.getBoundingClientRect();
    this.zoom(Math.exp(-event.deltaY * 0.0015), event.clientX - r.left, event.clientY - r.top);
  }

  down(event) {
    this.canvas.setPointerCapture(event.pointerId);
    this.drag = { x: event.clientX, y: event.clientY, ox: this.view.ox, oy: this.view.oy };
  }

  move(event) {
    if (this.drag) {
      this.view.ox = this.drag.ox + event.clientX - this.drag.x;
      this.view.oy = this.drag.oy + event.clientY - this.drag.y;
      this.redraw();
      return;
    }
    const r = this.canvas.getBoundingClientRect();
    this.hover(event.clientX - r.left, event.clientY - r.top);
  }

  up(event) {
    if (this.drag && this.canvas.hasPointerCapture(event.pointerId)) {
      this.canvas.releasePointerCapture(event.pointerId);
    }
    this.drag = null;
  }

  /** The tile under photo point (px, py) whose centre is nearest; -1 for none. */
  tileAt(px, py) {
    const t = this.tiles;
    if (!t || t.n === 0) return -1;
    const stepY = t.rows > 1 ? t.y[t.cols] - t.y[0] : t.h[0];
    const stepX = t.cols > 1 ? t.x[1] - t.x[0] : t.w[0];
    const r0 = Math.round((py - t.h[0] / 2) / Math.max(1, stepY));
    const c0 = Math.round((px - t.w[0] / 2) / Math.max(1, stepX));
    let best = -1, bestDistance = Infinity;
    for (let r = r0 - 1; r <= r0 + 1; r++) {
      for (let c = c0 - 1; c <= c0 + 1; c++) {
        if (r < 0 || c < 0 || r >= t.rows || c >= t.cols) continue;
        const i = r * t.cols + c;
        if (i >= t.n || px < t.x[i] || py < t.y[i] || px >= t.x[i] + t.w[i] || py >= t.y[i] + t.h[i]) continue;
        const d = (px - t.x[i] - t.w[i] / 2) ** 2 + (py - t.y[i] - t.h[i] / 2) ** 2;
        if (d < bestDistance) { best = i; bestDistance = d; }
      }
    }
    return best;
  }

  hover(cx, cy) {
    const v = this.view;
    const i = this.tileAt((cx - v.ox) / v.scale, (cy - v.oy) / v.scale);
    if (i < 0) return this.hideTooltip();
    const t = this.tiles;
    const C = t.classes.length;
    const lines = t.classes.map((c, k) => `${c}: ${t.probs[i * C + k].toFixed(3)}`);
    const r = Math.floor(i / t.cols), c = i % t.cols;
    this.tooltip.textContent = `tile row ${r}, col ${c} (x ${t.x[i]}, y ${t.y[i]})\np(defect) ${t.defect[i].toFixed(3)}\n${lines.join("\n")}`;
    this.tooltip.hidden = false;
    this.tooltip.style.left = `${Math.min(cx + 14, this.cssWidth - 200)}px`;
    this.tooltip.style.top = `${Math.min(cy + 14, this.cssHeight - 90)}px`;
    this.hovered = i;
    this.redraw();
  }

  hideTooltip() {
    this.tooltip.hidden = true;
    if (this.hovered !== undefined) {
      this.hovered = undefined;
      this.redraw();
    }
  }

  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#1d2327";
    ctx.fillRect(0, 0, this.cssWidth, this.cssHeight);
    if (!this.photo || !this.size) return;
    const { scale: s, ox, oy } = this.view;
    ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * ox, dpr * oy);
    ctx.imageSmoothingEnabled = s < 2;
    ctx.drawImage(this.photo, 0, 0, this.size.width, this.size.height);
    const t = this.tiles;
    if (!t) return;
    // Only the tiles in view: a 40 MP photo cut at a small stride holds 250,000 of them.
    const x0 = -ox / s, y0 = -oy / s, x1 = x0 + this.cssWidth / s, y1 = y0 + this.cssHeight / s;
    const outline = t.w[0] * s >= 10;
    ctx.lineWidth = 1 / s;
    for (let i = 0; i < t.n; i++) {
      if (t.x[i] > x1 || t.y[i] > y1 || t.x[i] + t.w[i] < x0 || t.y[i] + t.h[i] < y0) continue;
      const p = t.defect[i];
      if (p >= this.threshold) {
        ctx.globalAlpha = 0.18 + 0.3 * p;
        ctx.fillStyle = heat(p);
        ctx.fillRect(t.x[i], t.y[i], t.w[i], t.h[i]);
        ctx.globalAlpha = 1;
        ctx.strokeStyle = heat(p);
        ctx.strokeRect(t.x[i], t.y[i], t.w[i], t.h[i]);
      } else if (outline) {
        ctx.strokeStyle = "rgba(255,255,255,0.18)";
        ctx.strokeRect(t.x[i], t.y[i], t.w[i], t.h[i]);
      }
    }
    if (this.hovered !== undefined) {
      const i = this.hovered;
      ctx.lineWidth = 2 / s;
      ctx.strokeStyle = "#4fc3f7";
      ctx.strokeRect(t.x[i], t.y[i], t.w[i], t.h[i]);
    }
  }
}

// The Maps screen: the inspections list, one map in the viewer, and photo uploads.

import { download, getBlob, getJson, messageOf, upload } from "./api.js";
import { clearError, dropZone, el, guarded, pct, progressBar, showError, when } from "./ui.js";
import { MapViewer, countTiles, tileArrays } from "./viewer.js";

const PAGE = 15;
const TILE_PAGE = 5000; // the most /tiles gives per request
const PHOTO_SIDE = 8192; // full resolution for 7000 x 6000 surveys, scaled above that
const MAX_UPLOAD_TRIES = 20;

export class MapsScreen {
  constructor(app) {
    this.app = app;
    this.offset = 0;
    this.open = null; // the open inspection (the full document)
    this.tiles = null;
    this.viewer = new MapViewer(document.getElementById("map-canvas"), document.getElementById("map-tooltip"));
    document.getElementById("list-prev").addEventListener("click", () => this.page(-PAGE));
    document.getElementById("list-next").addEventListener("click", () => this.page(PAGE));
    document.getElementById("zoom-in").addEventListener("click", () => this.zoom(1.5));
    document.getElementById("zoom-out").addEventListener("click", () => this.zoom(1 / 1.5));
    document.getElementById("zoom-fit").addEventListener("click", () => { this.viewer.fit(); this.showZoom(); });
    document.getElementById("map-canvas").addEventListener("wheel", () => this.showZoom());
    const slider = document.getElementById("threshold");
    slider.addEventListener("input", () => this.setThreshold(Number(slider.value)));
    document.getElementById("get-overlay").addEventListener("click", guarded(() => this.downloadOverlay()));
    document.getElementById("get-geojson").addEventListener("click", guarded(() => this.downloadGeojson()));
    dropZone(document.getElementById("photo-drop"), document.getElementById("photo-files"), (files) => this.uploadAll(files));
  }

  async refresh() {
    const { body, changed } = await getJson(`/v1/inspections?limit=${PAGE}&offset=${this.offset}`, { poll: true });
    if (changed) this.renderList(body);
    if (!this.open && body.items.length) {
      const first = body.items.find((i) => i.status === "succeeded");
      if (first) await this.show(first.id);
    } else if (this.open && this.open.status !== "succeeded" && this.open.status !== "failed") {
      await this.show(this.open.id); // still running: a 304 until it finishes
    }
  }

  page(delta) {
    this.offset = Math.max(0, this.offset + delta);
    guarded(() => this.refresh(), "list")();
  }

  renderList(page) {
    const list = document.getElementById("inspection-list");
    list.replaceChildren(
      ...page.items.map((i) => {
        const s = i.summary;
        const line = s ? `${s.defect_tiles}/${s.tiles} defect tiles · max p ${s.max_defect_prob.toFixed(2)}` : i.error || i.status;
        const item = el(
          "li",
          { className: `pick status-${i.status}`, tabIndex: 0, dataset: { id: i.id } },
          el("strong", {}, i.filename),
          el("span", { className: "status" }, i.status),
          el("small", {}, `${when(i.created_at)} · ${i.width}×${i.height}`),
          el("small", { className: "line" }, line),
        );
        if (this.open && this.open.id === i.id) item.classList.add("chosen");
        item.addEventListener("click", guarded(() => this.show(i.id), "map"));
        item.addEventListener("keydown", (e) => { if (e.key === "Enter") guarded(() => this.show(i.id), "map")(); });
        return item;
      }),
    );
    const last = Math.min(page.total, page.offset + page.items.length);
    document.getElementById("list-range").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "no inspections yet";
    document.getElementById("list-prev").disabled = page.offset === 0;
    document.getElementById("list-next").disabled = last >= page.total;
  }

  /** Open inspection `id`: the map with its tiles, and the photo under them. */
  async show(id) {
    const { body: ins, changed } = await getJson(`/v1/inspections/${id}`, { poll: true });
    if (!changed && this.open && this.open.id === id) return;
    const switched = !this.open || this.open.id !== id;
    this.open = ins;
    this.app.inspectionChanged(ins);
    for (const item of document.querySelectorAll("#inspection-list li")) item.classList.toggle("chosen", item.dataset.id === id);
    const title = document.getElementById("map-title");
    title.textContent = `${ins.filename} — ${ins.status}`;
    if (ins.status !== "succeeded") {
      this.tiles = null;
      this.viewer.clear();
      document.getElementById("map-facts").textContent = ins.error || "The map appears here when the inspection finishes.";
      document.getElementById("map-tools").hidden = true;
      return;
    }
    const map = ins.crackmap;
    const note = document.getElementById("map-facts");
    note.textContent = "loading the tiles and the photo…";
    const [tiles, photo] = await Promise.all([this.loadTiles(ins, (k) => { note.textContent = `loading tiles ${k.toLocaleString()} of ${map.summary.tiles.toLocaleString()}…`; }), this.loadPhoto(ins)]);
    if (!this.open || this.open.id !== id) return; // another map was picked meanwhile
    this.tiles = tileArrays(map, tiles);
    const slider = document.getElementById("threshold");
    slider.value = String(map.summary.threshold);
    document.getElementById("map-tools").hidden = false;
    if (switched || !this.viewer.photo) this.viewer.show(photo, { width: ins.width, height: ins.height }, this.tiles, map.summary.threshold);
    this.setThreshold(map.summary.threshold);
    this.showZoom();
    const m = map.model;
    note.textContent = `${ins.width}×${ins.height} px · ${map.tiling.rows}×${map.tiling.cols} tiles of ${map.tiling.tile} px at stride ${map.tiling.stride} · ${m.backbone}${m.loss ? ` + ${m.loss}` : ""}, model threshold ${m.operating_threshold.toFixed(2)}`;
  }

  /** Every tile: inline in the map when it is small, else paged from /tiles. */
  async loadTiles(ins, onProgress) {
    if (ins.crackmap.tiles) return ins.crackmap.tiles;
    const tiles = [];
    const total = ins.crackmap.summary.tiles;
    while (tiles.length < total) {
      const { body } = await getJson(`${ins.tiles_url}?limit=${TILE_PAGE}&offset=${tiles.length}`);
      if (!body.items.length) break;
      tiles.push(...body.items);
      onProgress(tiles.length);
    }
    return tiles;
  }

  async loadPhoto(ins) {
    const blob = await getBlob(`${ins.photo_url}?max_side=${PHOTO_SIDE}`);
    return createImageBitmap(blob);
  }

  zoom(factor) {
    this.viewer.zoom(factor);
    this.showZoom();
  }

  showZoom() {
    document.getElementById("zoom-level").textContent = `${Math.round(100 * this.viewer.zoomLevel())}%`;
  }

  /** Recolour and recount at threshold t, from the tiles already here. */
  setThreshold(t) {
    document.getElementById("threshold-value").textContent = t.toFixed(2);
    this.viewer.setThreshold(t);
    if (!this.tiles) return;
    const counts = countTiles(this.tiles, t);
    const rows = Object.entries(counts.perClass).map(([name, k]) => el("tr", {}, el("td", {}, name), el("td", {}, k.toLocaleString()), el("td", {}, pct(k / Math.max(1, counts.total)))));
    rows.push(el("tr", { className: "defects" }, el("td", {}, `defect at p ≥ ${t.toFixed(2)}`), el("td", { id: "defect-count" }, counts.defects.toLocaleString()), el("td", {}, pct(counts.defects / Math.max(1, counts.total)))));
    document.querySelector("#class-counts tbody").replaceChildren(...rows);
  }

  async downloadOverlay() {
    await download(this.open.overlay_url, `${stem(this.open.filename)}-overlay.png`);
  }

  async downloadGeojson() {
    const t = Number(document.getElementById("threshold").value);
    await download(`${this.open.geojson_url}?threshold=${t}`, `${stem(this.open.filename)}-defects.geojson`);
  }

  async uploadAll(files) {
    const photos = files.filter((f) => /\.(jpe?g|png|tiff?)$/i.test(f.name) || f.type.startsWith("image/"));
    if (photos.length < files.length) showError(new Error(`skipped ${files.length - photos.length} file(s) that are not JPEG, PNG or TIFF photos`), "upload");
    const list = document.getElementById("uploads");
    for (const file of photos) {
      const row = el("li", {}, el("span", {}, file.name), progressBar(0), el("small", { className: "state" }, "waiting"));
      list.prepend(row);
      while (list.children.length > 20) list.lastChild.remove();
      await this.uploadOne(file, row);
    }
    await this.refresh();
  }

  /** Upload one photo; a 429 (the inspection queue is full) waits Retry-After and tries again. */
  async uploadOne(file, row) {
    const state = row.querySelector(".state");
    const bar = row.querySelector(".bar > div");
    for (let attempt = 1; attempt <= MAX_UPLOAD_TRIES; attempt++) {
      const form = new FormData();
      form.append("image", file, file.name);
      state.textContent = "uploading";
      let reply;
      try {
        reply = await upload("/v1/inspections", form, (f) => { bar.style.width = `${100 * f}%`; state.textContent = `uploading ${Math.round(100 * f)}%`; });
      } catch (error) {
        state.textContent = error.message;
        row.classList.add("failed");
        return;
      }
      if (reply.status === 201 || reply.status === 202) {
        bar.style.width = "100%";
        state.textContent = reply.body.status === "succeeded" ? "mapped" : `${reply.body.status}: mapping on the server`;
        row.classList.add("done");
        if (reply.status === 201 && reply.body.status === "succeeded") await this.show(reply.body.id);
        clearError("upload");
        return;
      }
      if (reply.status === 429 || reply.status === 503) {
        const wait = reply.retryAfter || 5;
        for (let left = wait; left > 0; left--) {
          state.textContent = `busy, retrying in ${left} s`;
          await new Promise((r) => setTimeout(r, 1000));
        }
        continue;
      }
      state.textContent = messageOf(reply.status, reply.body, "upload failed");
      row.classList.add("failed");
      return;
    }
    state.textContent = `still busy after ${MAX_UPLOAD_TRIES} tries: upload it again later`;
    row.classList.add("failed");
  }
}

function stem(name) {
  return name.replace(/\.[^.]+$/, "");
}

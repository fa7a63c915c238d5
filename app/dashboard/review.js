// The Review screen: the open map's review tiles as crops, labelled from the keyboard.
// c = crack (the first defect class), n = no crack (the first other class), 1-9 = class by
// number; arrows move; each label is saved as it is given.

import { get, getBlob, send } from "./api.js";
import { el, guarded, showError } from "./ui.js";

const BATCH = 24;

export class ReviewScreen {
  constructor(app) {
    this.app = app;
    this.inspection = null;
    this.items = [];
    this.current = 0;
    this.given = 0; // labels given in this browser session
    this.urls = [];
    document.getElementById("review-more").addEventListener("click", guarded(() => this.load(), "review"));
    document.getElementById("feedback-start").addEventListener("click", guarded(() => this.startFeedback(), "review"));
    document.addEventListener("keydown", (e) => this.key(e));
  }

  /** The Maps screen opened another inspection: review that one next time. */
  inspectionChanged(ins) {
    if (!this.inspection || this.inspection.id !== ins.id) {
      this.inspection = ins;
      this.items = [];
      this.render();
    } else {
      this.inspection = ins;
    }
  }

  async refresh() {
    if (this.inspection && this.inspection.status === "succeeded" && !this.items.length) await this.load();
    else this.render();
  }

  classes() {
    const model = this.inspection.crackmap.model;
    const defect = model.defect_classes[0];
    const clear = model.classes.find((c) => !model.defect_classes.includes(c));
    return { all: model.classes, defect, clear };
  }

  async load() {
    const ins = this.inspection;
    if (!ins || ins.status !== "succeeded") return this.render();
    const review = await get(`/v1/inspections/${ins.id}/review?limit=${BATCH}`);
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.labelled = review.labelled;
    this.items = review.items.map((t) => ({ ...t, label: null, src: null }));
    this.current = 0;
    this.render();
    await Promise.all(
      this.items.map(async (item) => {
        item.src = URL.createObjectURL(await getBlob(item.crop_url));
        this.urls.push(item.src);
        const img = document.querySelector(`#review-tiles [data-key="${item.row}-${item.col}"] img`);
        if (img) img.src = item.src;
      }),
    );
  }

  render() {
    const ins = this.inspection;
    const grid = document.getElementById("review-tiles");
    const title = document.getElementById("review-title");
    if (!ins || ins.status !== "succeeded") {
      title.textContent = "Open a finished map on the Maps screen to review its tiles.";
      grid.replaceChildren();
      document.getElementById("review-keys").textContent = "";
      this.renderCounter();
      return;
    }
    title.textContent = `Reviewing ${ins.filename}: ${this.items.length} tiles picked for labelling`;
    const { all, defect, clear } = this.classes();
    const digits = all.map((c, k) => `${k + 1} = ${c}`).join(", ");
    document.getElementById("review-keys").textContent = `Keys: c = ${defect}, n = ${clear}, ${digits}; ← → ↑ ↓ move. Labels are saved as you give them.`;
    grid.replaceChildren(
      ...this.items.map((item, k) =>
        el(
          "figure",
          {
            className: `tile${k === this.current ? " current" : ""}${item.label ? " labelled" : ""}`,
            dataset: { key: `${item.row}-${item.col}` },
            onclick: () => { this.current = k; this.render(); },
          },
          el("img", { src: item.src || "", alt: `tile ${item.row}, ${item.col}`, width: 112, height: 112 }),
          el("figcaption", {}, `p(defect) ${item.defect_prob.toFixed(2)}`, el("br"), item.label ? el("b", {}, item.label) : "unlabelled"),
        ),
      ),
    );
    this.renderCounter();
  }

  renderCounter() {
    const onMap = this.labelled === undefined ? "" : ` · ${this.labelled} on this map`;
    document.getElementById("review-counter").textContent = `${this.given} labels given${onMap}`;
  }

  key(event) {
    if (this.app.screen !== "review" || !this.items.length) return;
    if (event.target.closest && event.target.closest("input, select, textarea")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const columns = Math.max(1, Math.round(document.getElementById("review-tiles").clientWidth / 132));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
    if (event.key in moves) {
      event.preventDefault();
      this.current = Math.max(0, Math.min(this.items.length - 1, this.current + moves[event.key]));
      this.render();
      return;
    }
    const { all, defect, clear } = this.classes();
    let label = null;
    if (event.key === "c") label = defect;
    else if (event.key === "n") label = clear;
    else if (/^[1-9]$/.test(event.key) && Number(event.key) <= all.length) label = all[Number(event.key) - 1];
    if (label) {
      event.preventDefault();
      guarded(() => this.label(label), "review")();
    }
  }

  /** Save `label` for the current tile, then move to the next unlabelled one. */
  async label(label) {
    const item = this.items[this.current];
    const index = this.current;
    await send("POST", `/v1/inspections/${this.inspection.id}/labels`, { labels: [{ row: item.row, col: item.col, label }] });
    if (!item.label) {
      this.given += 1;
      this.labelled = (this.labelled || 0) + 1;
    }
    item.label = label;
    const next = this.items.findIndex((t, k) => k > index && !t.label);
    if (next >= 0) this.current = next;
    this.render();
  }

  /** Fine-tune the map's model on every stored label (a feedback job), then follow it. */
  async startFeedback() {
    const ins = this.inspection;
    if (!ins || !ins.model_id) throw new Error("open a finished map first: the job fine-tunes its model");
    const epochs = Number(document.getElementById("feedback-epochs").value);
    if (!(epochs >= 1 && epochs <= 1000)) throw new Error("epochs: a whole number from 1 to 1000");
    // Only what the inspector chose: the job takes the rest of the recipe from the base model.
    const body = {
      feedback: true,
      base_model_id: ins.model_id,
      epochs,
      auto_activate: document.getElementById("feedback-activate").checked,
    };
    let job;
    try {
      job = await send("POST", "/v1/jobs", body);
    } catch (error) {
      showError(error, "review");
      return;
    }
    this.app.followJob(job.id);
  }
}

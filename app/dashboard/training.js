// The Training screen: labelled-set uploads, the job form, the jobs list, and one job's
// live curves (training loss, validation macro F1, validation ECE) with cancel and retry.

import { get, getJson, messageOf, openapi, send, upload } from "./api.js";
import { lineChart } from "./charts.js";
import { dropZone, el, guarded, num, progressBar, when } from "./ui.js";

const FINAL = ["succeeded", "failed", "cancelled"];
const LOSS_HINTS = {
  ce: "plain cross-entropy: the baseline",
  focal: "focal loss: down-weights easy tiles, for rare cracks",
  isda: "ISDA: implicit semantic augmentation from class covariances; best on real photos so far",
  gm: "gradient modulation alone, without semantic augmentation",
  igmsda: "IGMSDA (the paper's closed form): augmentation modulated by each tile's gradient",
  "igmsda-exact": "IGMSDA's expected loss computed exactly (the default): no closed-form bias, calibrated, at ISDA's cost",
};

export class TrainingScreen {
  constructor(app) {
    this.app = app;
    this.jobId = null;
    this.formReady = false;
    document.getElementById("job-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(() => this.submit(), "training")(); });
    document.getElementById("job-loss").addEventListener("change", () => this.showHint());
    document.getElementById("job-cancel").addEventListener("click", guarded(() => this.cancel(), "training"));
    document.getElementById("job-retry").addEventListener("click", guarded(() => this.retry(), "training"));
    const upload = guarded((files) => this.uploadSet(files[0]), "training");
    dropZone(document.getElementById("set-drop"), document.getElementById("set-file"), upload);
  }

  async refresh() {
    if (!this.formReady) await this.buildForm();
    const { body, changed } = await getJson("/v1/jobs?limit=12", { poll: true });
    if (changed) this.renderJobs(body);
    if (!this.jobId && body.items.length) this.jobId = body.items[0].id;
    if (this.jobId) await this.showJob();
  }

  follow(jobId) {
    this.jobId = jobId;
  }

  async buildForm() {
    const schema = (await openapi()).components.schemas.JobCreate.properties;
    fill(document.getElementById("job-backbone"), schema.backbone.enum, "resnet18");
    fill(document.getElementById("job-loss"), schema.loss.enum, schema.loss.default);
    this.showHint();
    await this.refreshChoices();
    this.formReady = true;
  }

  /** The sets and base models the form offers (after an upload or a new model too). */
  async refreshChoices() {
    const [sets, models] = await Promise.all([get("/v1/datasets?limit=200"), get("/v1/models?limit=200")]);
    const box = document.getElementById("job-sets");
    const chosen = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
    box.replaceChildren(
      ...sets.items.map((d) =>
        el("label", { className: "check" }, el("input", { type: "checkbox", value: d.id, checked: chosen.has(d.id) }), ` ${d.name} `, el("small", {}, `${d.layout}, classes ${d.classes.join("/")}`)),
      ),
    );
    if (!sets.items.length) box.append(el("small", {}, "no labelled sets yet: upload one above"));
    const base = document.getElementById("job-base");
    const keep = base.value;
    base.replaceChildren(el("option", { value: "" }, "none (a new model)"), ...models.items.map((m) => el("option", { value: m.id }, `${m.name} (${m.backbone})`)));
    base.value = keep;
  }

  showHint() {
    document.getElementById("job-loss-hint").textContent = LOSS_HINTS[document.getElementById("job-loss").value] || "";
  }

  async submit() {
    const sets = [...document.querySelectorAll("#job-sets input:checked")].map((i) => i.value);
    if (!sets.length) throw new Error("pick at least one labelled set to train on");
    const value = (id) => document.getElementById(id).value;
    const body = {
      dataset_ids: sets,
      backbone: value("job-backbone"),
      loss: value("job-loss"),
      epochs: Number(value("job-epochs")),
      image_size: Number(value("job-size")),
      batch_size: Number(value("job-batch")),
      auto_activate: document.getElementById("job-activate").checked,
    };
    if (value("job-base")) body.base_model_id = value("job-base");
    const job = await send("POST", "/v1/jobs", body);
    this.jobId = job.id;
    await this.refresh();
  }

  async uploadSet(file) {
    if (!file) return;
    const out = document.getElementById("set-summary");
    out.replaceChildren(`uploading ${file.name}…`, progressBar(0));
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("name", file.name.replace(/\.zip$/i, ""));
    const reply = await upload("/v1/datasets", form, (f) => {
      const bar = out.querySelector(".bar > div");
      if (bar) bar.style.width = `${100 * f}%`;
      if (f >= 1) out.firstChild.textContent = `checking ${file.name} on the server…`;
    });
    if (reply.status !== 201) {
      out.replaceChildren(el("p", { className: "failed" }, `${file.name} was not stored: ${messageOf(reply.status, reply.body, "upload failed")}`));
      return;
    }
    const d = reply.body;
    const counts = Object.entries(d.counts).map(([split, byClass]) => el("li", {}, `${split}: ${typeof byClass === "object" ? Object.entries(byClass).map(([c, k]) => `${c} ${k}`).join(", ") : byClass}`));
    const skipped = Object.keys(d.skipped || {}).length ? el("li", {}, `skipped: ${JSON.stringify(d.skipped)}`) : null;
    out.replaceChildren(
      el("p", {}, el("strong", {}, d.name), ` stored: ${d.layout} layout, classes ${d.classes.join(", ")} (defects: ${d.defect_classes.join(", ")}), ${d.duplicates_removed} duplicates removed`),
      el("ul", {}, ...counts, skipped),
    );
    await this.refreshChoices();
  }

  renderJobs(page) {
    const rows = page.items.map((j) =>
      el(
        "tr",
        { className: `pick${j.id === this.jobId ? " chosen" : ""}`, onclick: () => { this.jobId = j.id; guarded(() => this.refresh(), "training")(); } },
        el("td", {}, j.id.slice(0, 8)),
        el("td", {}, j.feedback ? "feedback" : (j.dataset_ids || []).length > 1 ? `${j.dataset_ids.length} sets` : "set"),
        el("td", {}, `${j.config.backbone} + ${j.config.loss}`),
        el("td", { className: `status-${j.status}` }, j.status),
        el("td", {}, progressBar(j.progress)),
        el("td", {}, `${j.epoch}/${j.config.epochs}`),
        el("td", {}, when(j.created_at)),
      ),
    );
    document.querySelector("#jobs tbody").replaceChildren(...rows);
  }

  async showJob() {
    const { body: job, changed } = await getJson(`/v1/jobs/${this.jobId}`, { poll: true });
    if (!changed) return;
    for (const tr of document.querySelectorAll("#jobs tbody tr")) tr.classList.toggle("chosen", tr.firstChild.textContent === job.id.slice(0, 8));
    document.getElementById("job-title").textContent = `Job ${job.id.slice(0, 8)}: ${job.config.backbone} + ${job.config.loss}${job.feedback ? " (feedback fine-tuning)" : ""}`;
    const status = document.getElementById("job-status");
    status.className = `status-${job.status}`;
    status.textContent = `${job.status} · ${job.progress.toFixed(0)}% · epoch ${Math.max(job.epoch, job.epochs.length)} of ${job.config.epochs}${job.error ? ` · ${job.error}` : ""}`;
    document.getElementById("job-progress").replaceChildren(progressBar(job.progress));
    const e = job.epochs;
    document.getElementById("job-charts").replaceChildren(
      lineChart("training loss", e.map((r) => [r.epoch, r.train_loss]), job.config.epochs, "#1e88e5"),
      lineChart("validation macro F1", e.map((r) => [r.epoch, r.val_macro_f1]), job.config.epochs, "#2e7d32"),
      lineChart("validation ECE", e.map((r) => [r.epoch, r.metrics.val_ece]), job.config.epochs, "#ef6c00"),
    );
    document.getElementById("job-cancel").hidden = FINAL.includes(job.status);
    document.getElementById("job-retry").hidden = !["failed", "cancelled"].includes(job.status);
    const result = document.getElementById("job-result");
    const lines = [];
    if (job.result_model_id) lines.push(`model ${job.result_model_id.slice(0, 8)} stored${job.auto_activate ? " (auto-activate on)" : ""}; see Models`);
    const fb = job.metrics && job.metrics.feedback;
    if (fb) lines.push(`held-back labelled tiles: base model F1 ${num(fb.base.f1)}, new model F1 ${num(fb.new.f1)}${fb.activated !== undefined ? (fb.activated ? " — activated" : " — not activated") : ""}`);
    result.textContent = lines.join(" · ");
    if (job.result_model_id) await this.refreshChoices(); // the new model can be a base
  }

  async cancel() {
    await send("POST", `/v1/jobs/${this.jobId}/cancel`);
    await this.refresh();
  }

  async retry() {
    const job = await send("POST", `/v1/jobs/${this.jobId}/retry`);
    this.jobId = job.id;
    await this.refresh();
  }
}

function fill(select, values, chosen) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, selected: v === chosen }, v)));
}

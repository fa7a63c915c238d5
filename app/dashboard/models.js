// The Models screen: trained models side by side, and activation with confirmation.

import { getJson, send } from "./api.js";
import { el, guarded, num, when } from "./ui.js";

export class ModelsScreen {
  constructor(app) {
    this.app = app;
  }

  async refresh() {
    const { body, changed } = await getJson("/v1/models?limit=50", { poll: true });
    const active = body.items.find((m) => m.is_active);
    this.app.activeModelChanged(active || null);
    if (changed) this.render(body);
  }

  render(page) {
    const rows = page.items.map((m) => {
      const test = (m.metrics && m.metrics.test) || {};
      const detection = test.detection || {};
      const fb = m.metrics && m.metrics.feedback;
      const action = m.is_active
        ? el("strong", { className: "active" }, "active")
        : el("button", { type: "button", className: "activate", onclick: guarded(() => this.activate(m), "models") }, "Activate");
      return el(
        "tr",
        { className: m.is_active ? "chosen" : "", dataset: { id: m.id } },
        el("td", {}, m.name, el("br"), el("small", {}, `${m.id.slice(0, 8)} · ${when(m.created_at)}${m.parent_model_id ? ` · from ${m.parent_model_id.slice(0, 8)}` : ""}`)),
        el("td", {}, m.backbone),
        el("td", {}, m.config && m.config.loss ? m.config.loss : "–"),
        el("td", {}, num(detection.f1), fb ? el("small", {}, ` (held-back ${num(fb.new.f1)})`) : null),
        el("td", {}, num(test.macro_f1)),
        el("td", {}, num(test.ece_calibrated !== undefined ? test.ece_calibrated : test.ece)),
        el("td", {}, m.operating_threshold.toFixed(2)),
        el("td", {}, action),
      );
    });
    document.querySelector("#models tbody").replaceChildren(...rows);
    document.getElementById("models-empty").hidden = page.items.length > 0;
  }

  async activate(model) {
    const question = `Activate ${model.name} (${model.backbone})? Every new inspection will use it.`;
    if (!window.confirm(question)) return;
    await send("POST", `/v1/models/${model.id}/activate`);
    await this.refresh();
  }
}

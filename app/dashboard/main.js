// The dashboard: four screens over the JSON API, polled cheaply (ETags) while shown.

import { canCall, session, setKey } from "./api.js";
import { MapsScreen } from "./maps.js";
import { ModelsScreen } from "./models.js";
import { ReviewScreen } from "./review.js";
import { TrainingScreen } from "./training.js";
import { clearError, showError } from "./ui.js";

const SCREENS = ["maps", "review", "training", "models"];
const POLL_MS = 2500;

class Dashboard {
  constructor() {
    this.screen = "maps";
    this.busy = false;
    this.maps = new MapsScreen(this);
    this.review = new ReviewScreen(this);
    this.training = new TrainingScreen(this);
    this.models = new ModelsScreen(this);
    const key = document.getElementById("key");
    key.value = session.key;
    document.getElementById("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      setKey(key.value);
      this.keyChanged();
    });
    window.addEventListener("hashchange", () => this.go(location.hash.slice(1)));
  }

  async start() {
    try {
      const health = await (await fetch("/healthz", { cache: "no-store" })).json();
      session.auth = health.auth || "api-key";
    } catch {
      showError(new Error("the server does not answer /healthz"), "poll");
    }
    this.keyChanged();
    this.go(location.hash.slice(1) || "maps");
    setInterval(() => this.tick(), POLL_MS);
  }

  keyChanged() {
    const needed = !canCall();
    document.getElementById("key-prompt").hidden = !needed;
    document.getElementById("auth-state").textContent = session.auth === "none" ? "no key needed" : session.key ? "key set for this tab" : "";
    if (!needed) this.tick();
  }

  go(name) {
    this.screen = SCREENS.includes(name) ? name : "maps";
    for (const s of SCREENS) {
      document.getElementById(`screen-${s}`).hidden = s !== this.screen;
      document.getElementById(`tab-${s}`).setAttribute("aria-selected", String(s === this.screen));
    }
    if (location.hash.slice(1) !== this.screen) history.replaceState(null, "", `#${this.screen}`);
    this.tick();
  }

  /** Refresh the shown screen and the header; a poll already in flight is not doubled. */
  async tick() {
    if (this.busy || document.hidden || !canCall()) return;
    this.busy = true;
    try {
      await this[this.screen].refresh();
      if (this.screen !== "models") await this.models.refresh();
      clearError("poll");
    } catch (error) {
      showError(error, "poll");
    } finally {
      this.busy = false;
    }
  }

  inspectionChanged(ins) {
    this.review.inspectionChanged(ins);
  }

  followJob(jobId) {
    this.training.follow(jobId);
    location.hash = "training";
  }

  activeModelChanged(model) {
    document.getElementById("active-model").textContent = model ? `active model: ${model.name} (${model.backbone})` : "no active model";
  }
}

new Dashboard().start();

"""The model registry: checkpoints stored in the database, loaded once into predictors."""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.blobs import write_to_file
from core.config import Settings
from core.errors import NotFound, Unprocessable
from core.tables import NetworkModel
from models.checkpoint import load_checkpoint
from models.inference import InferenceConfig, Predictor


class ModelRegistry:
    """Predictors by model id, loaded from their stored checkpoint on first use.

    At most settings.max_loaded_models stay loaded: the least recently used is dropped
    first, so neither activations nor keys that ask for many models by id grow memory.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._lock = threading.Lock()
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self.warmed: set[str] = set()

    def loaded(self) -> list[str]:
        """Ids of the loaded models, least recently used first."""
        with self._lock:
            return list(self._predictors)

    def active_id(self) -> str | None:
        with self.sessions() as session:
            return session.scalar(select(NetworkModel.id).where(NetworkModel.is_active.is_(True)))

    def get(self, model_id: str | None) -> tuple[str, Predictor]:
        """The predictor of `model_id`, or of the active model when None."""
        model_id = model_id or self.active_id()
        if model_id is None:
            raise Unprocessable(
                "no model is active: train or import one, then activate it", field="model_id"
            )
        with self._lock:
            if model_id not in self._predictors:
                self._predictors[model_id] = self._load(model_id)
                while len(self._predictors) > self.settings.max_loaded_models:
                    evicted, _ = self._predictors.popitem(last=False)
                    self.warmed.discard(evicted)
            self._predictors.move_to_end(model_id)
            return model_id, self._predictors[model_id]

    def warm_active(self) -> bool:
        """Load and warm the active model; True when one is ready."""
        model_id = self.active_id()
        if model_id is None:
            return False
        _, predictor = self.get(model_id)
        if model_id not in self.warmed:
            predictor.warm_up()
            self.warmed.add(model_id)
        return True

    def forget(self, model_id: str) -> None:
        with self._lock:
            self._predictors.pop(model_id, None)
            self.warmed.discard(model_id)

    def _load(self, model_id: str) -> Predictor:
        with self.sessions() as session:
            row = session.get(NetworkModel, model_id)
            if row is None:
                raise NotFound(f"no model {model_id}", field="model_id")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.ckpt"
                write_to_file(session, row.blob_id, path)
                ckpt = load_checkpoint(path)
        config = InferenceConfig(
            device=self.settings.inference_device,
            batch_size=self.settings.inference_batch_size,
            cpu_bf16=self.settings.inference_cpu_bf16,
            max_pixels=self.settings.max_image_pixels,
            threshold=self.settings.default_threshold,
        )
        return Predictor(ckpt, config)

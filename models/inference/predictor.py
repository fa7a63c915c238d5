"""The Predictor: a checkpoint's model on a device, turning images into crack maps."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.checkpoint import Checkpoint
from models.data import normalise
from models.device import amp_dtype, select_device
from models.inference.crackmap import CrackMap, cell_heatmap, heatmap_cell
from models.inference.intake import DEFAULT_MAX_PIXELS, open_image
from models.inference.tile_table import TileTable
from models.inference.tiling import TileGrid, make_grid, tile_batches

ProgressFn = Callable[[int, int], None]  # (tiles done, tiles total)


@dataclass
class InferenceConfig:
    """How to run inspections."""

    device: str = "auto"
    batch_size: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    threshold: float | None = None  # None: the checkpoint's operating threshold
    amp: bool = True  # bf16/fp16 autocast on CUDA
    prefetch: bool | None = None  # prepare the next batch in a thread; default: on CUDA only

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")


class Predictor:
    """A loaded model ready for inspections. Thread-safe: one inspection runs at a time."""

    def __init__(self, checkpoint: Checkpoint, config: InferenceConfig | None = None) -> None:
        self.config = config or InferenceConfig()
        self.checkpoint = checkpoint
        self.device = select_device(self.config.device)
        self.model = checkpoint.build_model(self.device).to(memory_format=torch.channels_last)
        self.classes = list(checkpoint.classes)
        self.defect_index = [self.classes.index(c) for c in checkpoint.defect_classes]
        self.mean, self.std = tuple(checkpoint.mean), tuple(checkpoint.std)
        self.temperature = float(checkpoint.temperature)
        self._lock = threading.Lock()

    @property
    def model_info(self) -> dict[str, Any]:
        cfg = self.checkpoint.config
        return {
            "backbone": self.checkpoint.backbone,
            "content_hash": self.checkpoint.content_hash,
            "classes": self.classes,
            "defect_classes": list(self.checkpoint.defect_classes),
            "input_size": self.checkpoint.input_size,
            "temperature": self.temperature,
            "operating_threshold": self.checkpoint.operating_threshold,
            "tile_px": self.checkpoint.tile_px,
            "loss": cfg.get("loss"),
            "device": str(self.device),
        }

    @torch.inference_mode()
    def predict_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 tiles -> (B, C) calibrated probabilities softmax(z / T), float32 CPU."""
        x = normalise(batch.to(self.device, non_blocking=True), self.mean, self.std)
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = amp_dtype(self.device) if self.config.amp else None
        if dtype is None:
            logits = self.model(x)
        else:
            with torch.autocast(self.device.type, dtype=dtype):
                logits = self.model(x)
        return torch.softmax(logits.float() / self.temperature, dim=1).cpu()

    def warm_up(self) -> None:
        """Run one batch so the first request does not pay for lazy initialisation."""
        size = self.checkpoint.input_size
        self.predict_batch(torch.zeros(1, 3, size, size, dtype=torch.uint8))

    def inspect_bytes(
        self,
        data: bytes,
        tile: int | None = None,
        stride: int | None = None,
        threshold: float | None = None,
        progress: ProgressFn | None = None,
    ) -> CrackMap:
        """Decode an image file's bytes and map it (see inspect_image)."""
        started = time.perf_counter()
        image = open_image(data, self.config.max_pixels)
        decoded = time.perf_counter() - started
        crack_map = self.inspect_image(image, tile, stride, threshold, progress)
        crack_map.timings = {
            "decode_s": decoded,
            **crack_map.timings,
            "total_s": time.perf_counter() - started,
        }
        return crack_map

    def inspect_array(
        self,
        array: np.ndarray,
        tile: int | None = None,
        stride: int | None = None,
        threshold: float | None = None,
        progress: ProgressFn | None = None,
    ) -> CrackMap:
        """Map an (H, W, 3) uint8 array (see inspect_image for the arguments)."""
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {array.shape} {array.dtype}")
        with warnings.catch_warnings():  # a read-only array is fine: tiles are only read
            warnings.simplefilter("ignore", UserWarning)
            image = torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W) view, no copy
        return self._inspect(
            image, array.shape[0], array.shape[1], tile, stride, threshold, progress
        )

    def inspect_image(
        self,
        image: Image.Image,
        tile: int | None = None,
        stride: int | None = None,
        threshold: float | None = None,
        progress: ProgressFn | None = None,
    ) -> CrackMap:
        """Map an RGB PIL image; tiles are cropped from it batch by batch (no full-size copy).

        Args:
            tile: tile extent in pixels (default: the tile size the model was trained on, for
                a model trained on photos with masks, else its input size; tiles are resized
                to the input size).
            stride: step between tiles (default: tile/2 for a model trained on masks, as it
                was trained; otherwise the tile, no overlap).
            threshold: a tile is a defect when its summed defect-class probability >= threshold
                (default: the model's operating threshold, chosen on its validation split).
        """
        if image.mode != "RGB":
            raise ValueError(f"image must be RGB, got mode {image.mode}")
        return self._inspect(image, image.height, image.width, tile, stride, threshold, progress)

    def _inspect(
        self,
        image: torch.Tensor | Image.Image,
        height: int,
        width: int,
        tile: int | None,
        stride: int | None,
        threshold: float | None,
        progress: ProgressFn | None,
    ) -> CrackMap:
        size = self.checkpoint.input_size
        trained_tile = self.checkpoint.tile_px
        if tile is None and trained_tile is not None:
            tile, stride = trained_tile, stride or max(1, trained_tile // 2)
        tile = tile or size
        if threshold is None:
            threshold = self.config.threshold
        if threshold is None:
            threshold = self.checkpoint.operating_threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        grid = make_grid(height, width, tile, stride)
        started = time.perf_counter()
        probs = torch.empty(len(grid), len(self.classes))
        with self._lock:
            for first, batch in self._batches(image, grid, size):
                probs[first : first + batch.shape[0]] = self.predict_batch(batch)
                if progress is not None:
                    progress(first + batch.shape[0], len(grid))
        seconds = time.perf_counter() - started
        return self._crack_map(
            grid,
            probs,
            threshold,
            {"tiles_s": seconds, "tiles_per_s": len(grid) / max(seconds, 1e-9)},
        )

    def _batches(
        self, image: torch.Tensor | Image.Image, grid: TileGrid, size: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        batches = tile_batches(image, grid, self.config.batch_size, size)
        prefetch = (
            self.config.prefetch if self.config.prefetch is not None else self.device.type == "cuda"
        )
        if not prefetch:
            yield from batches
            return
        with ThreadPoolExecutor(max_workers=1) as pool:  # crop the next batch while this one runs
            pending = pool.submit(next, batches, None)
            while (item := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                if self.device.type == "cuda":
                    item = (item[0], item[1].pin_memory())
                yield item

    def _crack_map(
        self, grid: TileGrid, probs: torch.Tensor, threshold: float, timings: dict[str, float]
    ) -> CrackMap:
        """Arrays, not per-tile objects: probs (N, C) -> the table, p_defect (N,) -> the heatmap."""
        class_probs = probs.numpy().astype(np.float32, copy=False)
        defect = (
            class_probs[:, self.defect_index].sum(1, dtype=np.float32)
            if self.defect_index
            else np.zeros(len(grid), dtype=np.float32)
        )
        table = TileTable(
            grid=grid,
            classes=list(self.classes),
            defect_classes=list(self.checkpoint.defect_classes),
            threshold=threshold,
            probs=class_probs,
            defect_probs=defect,
        )
        cell = heatmap_cell(grid)
        return CrackMap(
            table=table,
            input_size=self.checkpoint.input_size,
            heatmap=cell_heatmap(grid, defect, cell),
            cell=cell,
            model=self.model_info,
            timings=timings,
        )

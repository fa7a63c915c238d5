"""The Predictor: a checkpoint's model on a device, turning images into crack maps."""

from __future__ import annotations

import io
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
from models.inference.inspection_grid import inspection_grid
from models.inference.intake import DEFAULT_MAX_PIXELS, open_image
from models.inference.resident import decode_to_device, host_preview
from models.inference.tile_table import TileTable
from models.inference.tiling import Piece, TileGrid, shared_batches
from models.inference.tta import averaged, check_tta

ProgressFn = Callable[[int, int], None]  # (tiles done, tiles total)


CPU_BATCH = 32
MAX_DEVICE_BATCH = 512
DEVICE_MEMORY_SHARE = 0.4  # of the free GPU memory, for one batch's activations
BYTES_PER_INPUT_PIXEL = 256  # activation bytes per input pixel, resnet50 in bf16, with margin
PREVIEW_SIDE = 1600  # the overlay's longest side (render_overlay's default)


@dataclass
class PhotoRequest:
    """One photo to map: its file's bytes and the grid and threshold asked for (None: the
    model's defaults)."""

    data: bytes
    tile: int | None = None
    stride: int | None = None
    threshold: float | None = None
    tta: str | None = None  # one of models.inference.tta.TTA_MODES; None: the config's


@dataclass
class MappedPhoto:
    """A photo's crack map, and the picture to draw its overlay on (an RGB PIL image, or an
    (h, w, 3) uint8 array at most PREVIEW_SIDE long when the photo lived on the device)."""

    crack_map: CrackMap
    preview: np.ndarray | Image.Image


def _height_width(image: torch.Tensor | Image.Image) -> tuple[int, int]:
    if isinstance(image, torch.Tensor):
        return int(image.shape[1]), int(image.shape[2])
    return image.height, image.width


@dataclass
class InferenceConfig:
    """How to run inspections."""

    device: str = "auto"
    batch_size: int | None = None  # None: 32 on the CPU; on CUDA sized to free memory, <= 512
    max_pixels: int = DEFAULT_MAX_PIXELS
    threshold: float | None = None  # None: the checkpoint's operating threshold
    amp: bool = True  # bf16/fp16 autocast on CUDA
    # bf16 autocast on CPUs with native bf16 (AVX512-BF16 or AMX; fp32 on others): on the real
    # test photos 99.96% of tile decisions match fp32, at twice the speed (bench.cpu_bf16)
    cpu_bf16: bool = True
    # Decode onto the device and cut tiles there (None: on CUDA only). On the CPU the
    # tensor path and the PIL path give identical tiles; PIL is kept as the CPU default.
    resident: bool | None = None
    prefetch: bool | None = None  # prepare the next batch in a thread; default: on CUDA only
    tta: str = "none"  # test-time augmentation (models.inference.tta): none, flip or d4

    def __post_init__(self) -> None:
        check_tta(self.tta)
        if self.batch_size is not None and self.batch_size < 1:
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
        self.batch_size = self.config.batch_size or self._batch_for_memory()
        self.resident = (
            self.config.resident if self.config.resident is not None else self.device.type == "cuda"
        )
        if self.device.type == "cpu":  # bf16 only where asked for and native, else float32
            self.amp = amp_dtype(self.device, cpu_bf16=True) if self.config.cpu_bf16 else None
        else:
            self.amp = amp_dtype(self.device) if self.config.amp else None
        self._lock = threading.Lock()

    def _batch_for_memory(self) -> int:
        """Tiles per forward pass: 32 on the CPU; on CUDA as many as DEVICE_MEMORY_SHARE of the
        free memory holds (BYTES_PER_INPUT_PIXEL per input pixel), between 8 and 512."""
        if self.device.type != "cuda":
            return CPU_BATCH
        free, _ = torch.cuda.mem_get_info(self.device)
        per_tile = BYTES_PER_INPUT_PIXEL * self.checkpoint.input_size**2
        return int(min(MAX_DEVICE_BATCH, max(8, DEVICE_MEMORY_SHARE * free // per_tile)))

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
            "precision": str(self.amp).removeprefix("torch.") if self.amp else "float32",
        }

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """(B, 3, S, S) uint8 tiles (any device) -> (B, C) float32 calibrated probabilities
        softmax(z / T) on the model's device: normalised there, channels_last, in bf16 (or
        fp16) under autocast where configured; with tta (default: the config's) the mean of
        those over the tiles' flipped and rotated views (models.inference.tta)."""
        mode = check_tta(tta or self.config.tta)
        return averaged(self._probabilities, batch.to(self.device, non_blocking=True), mode)

    def _probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        x = normalise(batch.to(self.device, non_blocking=True), self.mean, self.std)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.amp is None:
            logits = self.model(x)
        else:
            with torch.autocast(self.device.type, dtype=self.amp):
                logits = self.model(x)
        return torch.softmax(logits.float() / self.temperature, dim=1)

    def predict_batch(self, batch: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """(B, 3, S, S) uint8 tiles -> (B, C) calibrated probabilities, float32 on the CPU."""
        return self.forward(batch, tta).cpu()

    def warm_up(self) -> None:
        """Run one batch (and, on the resident path, one JPEG decode: nvjpeg starts lazily)
        so the first request does not pay for lazy initialisation."""
        size = self.checkpoint.input_size
        self.predict_batch(torch.zeros(1, 3, size, size, dtype=torch.uint8))
        if self.resident:
            buffer = io.BytesIO()
            Image.new("RGB", (16, 16)).save(buffer, format="JPEG")
            decode_to_device(buffer.getvalue(), self.device)

    def inspect_bytes(
        self,
        data: bytes,
        tile: int | None = None,
        stride: int | None = None,
        threshold: float | None = None,
        progress: ProgressFn | None = None,
        tta: str | None = None,
    ) -> CrackMap:
        """Decode an image file's bytes and map it (see inspect_image and map_photos)."""
        result = self.map_photos([PhotoRequest(data, tile, stride, threshold, tta)], progress)[0]
        if isinstance(result, Exception):
            raise result
        return result.crack_map

    def map_photos(
        self, requests: list[PhotoRequest], progress: ProgressFn | None = None
    ) -> list[MappedPhoto | Exception]:
        """Decode and map several photos, their tiles sharing forward passes.

        On the resident path (CUDA by default) each photo is decoded onto the device and
        its tiles are cut there; otherwise Pillow decodes it and tiles are cropped on the
        host. A photo that cannot be decoded, or whose grid is invalid, gets its exception
        in its place; the others are mapped. Probabilities come back to the host once, at
        the end. Each map's timings hold decode_s and the shared tiling_s, forward_s and
        assemble_s, and device_peak_mb on CUDA. Photos asked with different test-time
        augmentations are mapped in one group per mode.
        """
        modes = [check_tta(r.tta or self.config.tta) for r in requests]
        if len(set(modes)) > 1:
            grouped: list[MappedPhoto | Exception] = [ValueError("not mapped")] * len(requests)
            for mode in dict.fromkeys(modes):
                ks = [k for k, m in enumerate(modes) if m == mode]
                group = self.map_photos([requests[k] for k in ks], progress)
                for k, result in zip(ks, group, strict=True):
                    grouped[k] = result
            return grouped
        mode = modes[0] if modes else self.config.tta
        started = time.perf_counter()
        results: list[MappedPhoto | Exception | None] = [None] * len(requests)
        photos: list[tuple[int, torch.Tensor | Image.Image, TileGrid, float]] = []
        with self._lock:
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            for k, request in enumerate(requests):
                try:
                    image = self._decode(request.data)
                    grid, threshold = self._grid(
                        _height_width(image), request.tile, request.stride, request.threshold
                    )
                except (ValueError, OSError) as exc:  # ImageDecodeError is a ValueError
                    results[k] = exc
                    continue
                photos.append((k, image, grid, threshold))
            decoded = time.perf_counter()
            probs, timings = self._classify(photos, progress, mode)
            peak = (
                {"device_peak_mb": torch.cuda.max_memory_allocated(self.device) / 2**20}
                if self.device.type == "cuda"
                else {}
            )
        for (k, image, grid, threshold), p in zip(photos, probs, strict=True):
            assembling = time.perf_counter()
            crack_map = self._crack_map(grid, p, threshold, {}, mode)
            crack_map.timings = {
                "decode_s": (decoded - started) / max(1, len(requests)),
                **timings,
                "assemble_s": time.perf_counter() - assembling,
                "tiles_per_s": len(grid) / max(timings["tiles_s"], 1e-9),
                **peak,
                "total_s": time.perf_counter() - started,
            }
            results[k] = MappedPhoto(crack_map, self._preview(image))
        return [r if r is not None else ValueError("not mapped") for r in results]

    def _decode(self, data: bytes) -> torch.Tensor | Image.Image:
        if self.resident:
            return decode_to_device(data, self.device, self.config.max_pixels)
        return open_image(data, self.config.max_pixels)

    @staticmethod
    def _preview(image: torch.Tensor | Image.Image) -> np.ndarray | Image.Image:
        """What the overlay is drawn on: a device photo comes back scaled to the overlay."""
        return host_preview(image, PREVIEW_SIDE) if isinstance(image, torch.Tensor) else image

    def _classify(
        self,
        photos: list[tuple[int, torch.Tensor | Image.Image, TileGrid, float]],
        progress: ProgressFn | None,
        tta: str,
    ) -> tuple[list[torch.Tensor], dict[str, float]]:
        """Every photo's (N_k, C) probabilities (CPU float32), from shared batches."""
        started = time.perf_counter()
        grids = [grid for _, _, grid, _ in photos]
        total = sum(len(g) for g in grids)
        out = [torch.empty(len(g), len(self.classes), device=self.device) for g in grids]
        batches = shared_batches(
            [image for _, image, _, _ in photos], grids, self.batch_size, self.checkpoint.input_size
        )
        done, tiling, forward = 0, 0.0, 0.0
        waiting = time.perf_counter()
        for pieces, batch in self._prefetched(batches):
            t0 = time.perf_counter()
            tiling += t0 - waiting  # cutting (or waiting for) this batch
            p = self.forward(batch, tta)
            row = 0
            for k, first, count in pieces:
                out[k][first : first + count] = p[row : row + count]
                row += count
            forward += time.perf_counter() - t0
            done += batch.shape[0]
            if progress is not None:
                progress(done, total)
            waiting = time.perf_counter()
        t0 = time.perf_counter()
        host = [o.cpu() for o in out]  # the one copy back (and the sync, on CUDA)
        forward += time.perf_counter() - t0
        seconds = time.perf_counter() - started
        return host, {"tiles_s": seconds, "tiling_s": tiling, "forward_s": forward}

    def inspect_array(
        self,
        array: np.ndarray,
        tile: int | None = None,
        stride: int | None = None,
        threshold: float | None = None,
        progress: ProgressFn | None = None,
        tta: str | None = None,
    ) -> CrackMap:
        """Map an (H, W, 3) uint8 array (see inspect_image for the arguments)."""
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {array.shape} {array.dtype}")
        with warnings.catch_warnings():  # a read-only array is fine: tiles are only read
            warnings.simplefilter("ignore", UserWarning)
            image = torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W) view, no copy
        return self._inspect(
            image, array.shape[0], array.shape[1], tile, stride, threshold, progress, tta
        )

    def inspect_image(
        self,
        image: Image.Image,
        tile: int | None = None,
        stride: int | None = None,
        threshold: float | None = None,
        progress: ProgressFn | None = None,
        tta: str | None = None,
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
            tta: test-time augmentation, none, flip or d4 (default: the config's).
        """
        if image.mode != "RGB":
            raise ValueError(f"image must be RGB, got mode {image.mode}")
        return self._inspect(
            image, image.height, image.width, tile, stride, threshold, progress, tta
        )

    def _inspect(
        self,
        image: torch.Tensor | Image.Image,
        height: int,
        width: int,
        tile: int | None,
        stride: int | None,
        threshold: float | None,
        progress: ProgressFn | None,
        tta: str | None = None,
    ) -> CrackMap:
        grid, threshold = self._grid((height, width), tile, stride, threshold)
        mode = check_tta(tta or self.config.tta)
        with self._lock:
            probs, timings = self._classify([(0, image, grid, threshold)], progress, mode)
        return self._crack_map(
            grid,
            probs[0],
            threshold,
            {**timings, "tiles_per_s": len(grid) / max(timings["tiles_s"], 1e-9)},
            mode,
        )

    def _grid(
        self,
        height_width: tuple[int, int],
        tile: int | None,
        stride: int | None,
        threshold: float | None,
    ) -> tuple[TileGrid, float]:
        """The tile grid and threshold a request asks for, with the model's defaults."""
        if threshold is None:
            threshold = self.config.threshold
        if threshold is None:
            threshold = self.checkpoint.operating_threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return inspection_grid(self.checkpoint, *height_width, tile, stride), threshold

    def _prefetched(
        self, batches: Iterator[tuple[list[Piece], torch.Tensor]]
    ) -> Iterator[tuple[list[Piece], torch.Tensor]]:
        """The batches, the next one cut in a thread while this one runs (on CUDA by default;
        pointless on the resident path, where cutting is queued device work)."""
        prefetch = (
            self.config.prefetch
            if self.config.prefetch is not None
            else self.device.type == "cuda" and not self.resident
        )
        if not prefetch:
            yield from batches
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(next, batches, None)
            while (item := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                if item[1].device.type == "cpu" and self.device.type == "cuda":
                    item = (item[0], item[1].pin_memory())
                yield item

    def _crack_map(
        self,
        grid: TileGrid,
        probs: torch.Tensor,
        threshold: float,
        timings: dict[str, float],
        tta: str = "none",
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
            model={**self.model_info, "tta": tta},
            timings=timings,
        )

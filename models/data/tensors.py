"""Images as uint8 tensors (N, 3, S, S), decoded and resized once, and batches from them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.data.augment import check_augment, survey_augment
from models.data.sets import Sample
from models.data.sources import FileSource
from models.imageio import decode_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_tile(data: bytes, size: int) -> torch.Tensor:
    """Decode and resize one tile to (3, size, size) uint8."""
    return _to_tensor(decode_rgb(data), size)


def _to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_sample_tiles(data: bytes, samples: list[Sample], size: int) -> list[torch.Tensor]:
    """The tiles of samples that share one file: decoded once, then cropped and resized.

    Whole-image samples are EXIF-oriented; boxes are cut from the photo as stored,
    the orientation its mask was drawn in.
    """
    boxed = samples[0].box is not None
    image = decode_rgb(data, apply_exif=not boxed)
    if not boxed:
        return [_to_tensor(image, size) for _ in samples]
    out = []
    for sample in samples:
        assert sample.box is not None
        x, y, w, h = sample.box
        out.append(_to_tensor(image.crop((x, y, x + w, y + h)), size))
    return out


def tile_storage(n: int, size: int, spill_dir: str | Path | None = None) -> torch.Tensor:
    """An (n, 3, size, size) uint8 tensor: in memory, or mapped from a file in spill_dir.

    The mapped file is unlinked at once: the mapping keeps its pages until the tensor is
    freed, the disk holds them instead of RAM, and nothing is left behind after a crash.
    """
    if spill_dir is None:
        return torch.empty(n, 3, size, size, dtype=torch.uint8)
    folder = Path(spill_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="crackscan-tiles-", suffix=".u8", dir=folder)
    os.close(handle)
    try:
        array = np.memmap(name, dtype=np.uint8, mode="w+", shape=(max(1, n), 3, size, size))
    finally:
        os.unlink(name)
    return torch.from_numpy(array[:n])


def load_tiles(
    source: FileSource,
    samples: list[Sample],
    size: int,
    threads: int = 2,
    spill_dir: str | Path | None = None,
    on_decoded: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every file once: (N, 3, size, size) uint8 images and (N,) int64 labels.

    The set was verified when loaded, so decoding here does not fail on corrupt files.
    With spill_dir, the images live in a memory-mapped file there (see tile_storage).
    on_decoded(n) is called in the caller's thread as each file's n tiles are done.
    """
    images = tile_storage(len(samples), size, spill_dir)
    by_file: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        by_file.setdefault(sample.name, []).append(i)

    def fill(indices: list[int]) -> int:
        group = [samples[i] for i in indices]
        tiles = load_sample_tiles(source.read(group[0].name), group, size)
        for i, tile in zip(indices, tiles, strict=True):
            images[i] = tile
        return len(indices)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for n in pool.map(fill, by_file.values()):
            if on_decoded is not None:
                on_decoded(n)
    labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
    return images, labels


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 (x / 255 − mean) / std."""
    m = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, device=batch.device).view(1, -1, 1, 1) * 255.0
    return (batch.float() - m) / s


def balanced_sample(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices into `labels`, an equal share from each class present, drawn with `generator`.

    Class c (of K present, with m_c tiles) gets n // K tiles, the first n mod K classes one
    more. Within a class the draw is without replacement while it lasts: a class smaller
    than its share is taken whole, then again in another order, so no tile repeats before
    every tile of its class has been drawn.

    Args:
        labels: (N,) int64 class indices.
        n: the sample size, >= 1.

    Returns:
        (n,) int64 indices, in class order (the caller shuffles them).
    """
    if n < 1:
        raise ValueError(f"the sample size must be >= 1, got {n}")
    present = torch.unique(labels)
    if present.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    share, extra = divmod(n, int(present.numel()))
    parts = []
    for k, cls in enumerate(present.tolist()):
        pool = torch.nonzero(labels == cls).flatten()
        want = share + (1 if k < extra else 0)
        rounds = -(-want // pool.numel())  # ceil
        draws = [pool[torch.randperm(pool.numel(), generator=generator)] for _ in range(rounds)]
        parts.append(torch.cat(draws)[:want] if draws else pool[:0])
    return torch.cat(parts)


def epoch_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    augment: str,
    drop_last: bool = True,
    sample_size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, augmented batches for one epoch, every random draw from `generator`.

    The order and the augmentations (models.data.augment: none, flip or survey) depend
    only on the generator's seed, so an epoch is reproduced exactly when training resumes.
    With sample_size, the epoch covers a class-balanced sample of that many tiles
    (balanced_sample), drawn from the same generator first; else every tile once.
    """
    check_augment(augment)
    if sample_size is None:
        pool = torch.arange(images.shape[0])
    else:
        pool = balanced_sample(labels, sample_size, generator)
    n = pool.numel()
    order = pool[torch.randperm(n, generator=generator)]
    if augment == "flip":  # one coin per tile, as before sampling existed
        flips = torch.rand(images.shape[0], generator=generator) < 0.5
    else:
        flips = torch.zeros(images.shape[0], dtype=torch.bool)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        batch = images[idx]
        if augment == "survey":
            batch = survey_augment(batch, generator)
        flip = flips[idx]
        if bool(flip.any()):
            batch[flip] = batch[flip].flip(-1)
        yield batch, labels[idx]

"""Device choice and mixed precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def select_device(name: str = "auto") -> torch.device:
    """CUDA when present and asked for (or "auto"), else the CPU; ValueError for a bad name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return device


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; None (no autocast) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield

"""Device choice and mixed precision."""

from __future__ import annotations

import contextlib
import functools
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


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, else fp16.

    On the CPU: bf16 when cpu_bf16 is asked for and the CPU has native bf16, else None
    (no autocast: float32, as without the CPU's bf16 units it is slower, not faster).
    """
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else None
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool, cpu_bf16: bool = False) -> Iterator[None]:
    dtype = amp_dtype(device, cpu_bf16) if enabled else None
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield

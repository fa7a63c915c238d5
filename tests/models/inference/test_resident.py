"""The tensor path (photo as a tensor, tiles as views) against the PIL path, on the CPU;
EXIF orientation on tensors as PIL applies it; photos sharing forward passes; CPU bf16."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from models.device import cpu_has_native_bf16
from models.imageio import ImageDecodeError
from models.inference import InferenceConfig, MappedPhoto, PhotoRequest, Predictor
from models.inference.resident import decode_to_device, exif_orientation, host_preview, orient
from models.inference.tiling import make_grid, shared_batches, tile_batches
from tests.models.inference.test_predictor import random_checkpoint

CPU = torch.device("cpu")


def photo(width: int = 150, height: int = 100, seed: int = 0) -> Image.Image:
    """A photo whose every pixel differs, so any wrong flip or shift shows."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encoded(image: Image.Image, fmt: str, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(
        buffer, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {})
    )
    return buffer.getvalue()


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pil_exif_transpose(orientation):
    data = encoded(photo(), "JPEG", orientation)
    assert exif_orientation(data) == orientation
    stored = Image.open(io.BytesIO(data))
    stored.load()
    want = as_tensor(ImageOps.exif_transpose(stored))
    got = orient(as_tensor(stored), orientation)
    assert torch.equal(got, want)
    # and decode_to_device (PIL on the CPU) gives the same oriented pixels
    assert torch.equal(decode_to_device(data, CPU), want)


def test_orientation_defaults_to_upright():
    assert exif_orientation(encoded(photo(), "PNG")) == 1
    assert exif_orientation(b"not an image") == 1


def test_decode_to_device_refuses_what_open_image_refuses():
    data = encoded(photo(), "JPEG")
    with pytest.raises(ImageDecodeError):
        decode_to_device(data[: len(data) // 2], CPU)
    with pytest.raises(ValueError, match="over the cap"):
        decode_to_device(data, CPU, max_pixels=100)


def test_host_preview_is_a_scaled_copy():
    image = as_tensor(photo(400, 200))
    small = host_preview(image, 100)
    assert small.shape == (50, 100, 3) and small.dtype == np.uint8
    pil = np.asarray(
        photo(400, 200).resize((100, 50), Image.Resampling.BILINEAR, reducing_gap=None)
    )
    assert np.abs(small.astype(int) - pil.astype(int)).mean() < 3  # both antialiased bilinear
    same = host_preview(image, 1000)
    assert np.array_equal(same, np.asarray(photo(400, 200)))


def test_tensor_tiles_equal_pil_tiles():
    image = photo(157, 101)
    grid = make_grid(101, 157, 48, 24)
    pil = list(tile_batches(image, grid, 7, 32))
    tensor = list(tile_batches(as_tensor(image), grid, 7, 32))
    assert [f for f, _ in pil] == [f for f, _ in tensor]
    for (_, a), (_, b) in zip(pil, tensor, strict=True):
        assert torch.equal(a, b)


def test_shared_batches_run_on_across_photos_in_order():
    images = [as_tensor(photo(96, 64, seed=s)) for s in range(3)]
    grids = [make_grid(64, 96, 32, 32)] * 3  # 6 tiles each
    batches = list(shared_batches(images, grids, 4, 32))
    assert [b.shape[0] for _, b in batches] == [4, 4, 4, 4, 2]
    assert batches[1][0] == [(0, 4, 2), (1, 0, 2)]
    joined = torch.cat([b for _, b in batches])
    alone = torch.cat(
        [
            b
            for image, grid in zip(images, grids, strict=True)
            for _, b in tile_batches(image, grid, 6, 32)
        ]
    )
    assert torch.equal(joined, alone)


@pytest.mark.parametrize(("fmt", "orientation"), [("JPEG", 6), ("PNG", 1), ("TIFF", 3)])
def test_tensor_path_and_pil_path_make_the_same_map(fmt, orientation):
    """fp32 on the CPU: the same pixels, tiles and forward passes, so every decision agrees."""
    data = encoded(photo(200, 130), fmt, orientation)
    ckpt = random_checkpoint()
    fp32 = {"cpu_bf16": False}
    pil = Predictor(ckpt, InferenceConfig(resident=False, **fp32)).inspect_bytes(
        data, tile=32, stride=16
    )
    tensor = Predictor(ckpt, InferenceConfig(resident=True, **fp32)).inspect_bytes(
        data, tile=32, stride=16
    )
    assert (pil.height, pil.width) == ((200, 130) if orientation in (6, 8) else (130, 200))
    assert np.std(pil.table.defect_probs) > 0.05
    np.testing.assert_allclose(tensor.table.probs, pil.table.probs, rtol=0, atol=1e-6)
    assert np.array_equal(tensor.table.defect, pil.table.defect)


def test_photos_mapped_together_match_photos_mapped_alone_and_a_bad_one_fails_alone():
    ckpt = random_checkpoint()
    predictor = Predictor(ckpt, InferenceConfig(batch_size=16))
    datas = [encoded(photo(120, 90, seed=s), "PNG") for s in range(3)]
    requests = [PhotoRequest(d, tile=32, stride=16) for d in datas]
    requests.insert(1, PhotoRequest(b"\x89PNG broken", tile=32))
    results = predictor.map_photos(requests)
    assert isinstance(results[1], ImageDecodeError)
    mapped = [r for r in results if isinstance(r, MappedPhoto)]
    assert len(mapped) == 3
    for data, result in zip(datas, mapped, strict=True):
        alone = predictor.inspect_bytes(data, tile=32, stride=16)
        np.testing.assert_allclose(result.crack_map.table.probs, alone.table.probs, atol=1e-5)
        assert np.array_equal(result.crack_map.table.defect, alone.table.defect)
        timings = result.crack_map.timings
        assert {"decode_s", "tiling_s", "forward_s", "assemble_s", "tiles_s", "total_s"} <= set(
            timings
        )
    assert predictor.map_photos([PhotoRequest(datas[0], tile=4)])[0].__class__ is ValueError


def test_batch_size_defaults_to_32_on_the_cpu():
    assert Predictor(random_checkpoint()).batch_size == 32
    assert Predictor(random_checkpoint(), InferenceConfig(batch_size=5)).batch_size == 5


@pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX)"
)
def test_cpu_bf16_agrees_with_fp32():
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ckpt = random_checkpoint()
    fp32 = Predictor(ckpt, InferenceConfig(cpu_bf16=False)).inspect_array(image, tile=32, stride=16)
    bf16_predictor = Predictor(ckpt, InferenceConfig(cpu_bf16=True))
    bf16 = bf16_predictor.inspect_array(image, tile=32, stride=16)
    assert bf16_predictor.model_info["precision"] == "bfloat16"
    assert fp32.model["precision"] == "float32"
    agree = np.mean(bf16.table.defect == fp32.table.defect)
    assert agree >= 0.98, agree  # a random net with a scaled head: touchier than a trained one
    assert np.abs(bf16.table.defect_probs - fp32.table.defect_probs).max() < 0.1

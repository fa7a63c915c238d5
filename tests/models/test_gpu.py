"""CUDA paths: the losses in float32 on the GPU, AMP training, and bf16 inference. Skipped without a GPU."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from models.inference import InferenceConfig, Predictor
from models.losses import gm_expected_loss, igmsda_loss, isda_loss
from tests.models.inference.test_predictor import random_checkpoint
from tests.models.test_losses import random_problem

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_losses_on_cuda_match_cpu_float64():
    x, y, w, b, cov = random_problem(64, 3, 32, seed=1, scale=3.0)
    for fn in (
        lambda *a: isda_loss(*a, 2.0),
        lambda *a: igmsda_loss(*a, 2.0, 3.0),
        lambda *a: gm_expected_loss(*a, 2.0, 3.0),
    ):
        want = fn(x, y, w, b, cov)
        got = fn(
            *(t.float().cuda() if t.is_floating_point() else t.cuda() for t in (x, y, w, b, cov))
        )
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=1e-5)


def test_bf16_inference_agrees_with_cpu():
    """A head that reads the features (a zero head made the logits its bias, whatever the
    bf16 features were, so the old test could not fail)."""
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ckpt = random_checkpoint()
    cpu = Predictor(ckpt, InferenceConfig(device="cpu", cpu_bf16=False)).inspect_array(
        image, tile=32, stride=16
    )
    gpu = Predictor(ckpt, InferenceConfig(device="cuda", amp=True)).inspect_array(
        image, tile=32, stride=16
    )
    cpu_probs = np.array([t.defect_prob for t in cpu.tiles()])
    gpu_probs = np.array([t.defect_prob for t in gpu.tiles()])
    assert cpu_probs.std() > 0.05, "the features must move the probabilities"
    agree = np.mean([a.defect == b.defect for a, b in zip(gpu.tiles(), cpu.tiles(), strict=True)])
    # A random net with a scaled head is touchier than a trained one: on the CPU, bf16
    # autocast gave 98.9% agreement and a largest difference of 0.062 on this image.
    assert agree >= 0.98, agree
    assert np.abs(gpu_probs - cpu_probs).max() < 0.1


def test_amp_training_step_runs_with_fp32_loss(tiny_set):
    from models.data import load_labelled_set
    from models.training import TrainConfig, fit

    result = fit(
        TrainConfig(epochs=1, image_size=32, batch_size=16, device="cuda"),
        load_labelled_set(tiny_set),
    )
    assert np.isfinite(result.history[0]["train_loss"])


def survey_bytes(width: int, height: int, fmt: str, orientation: int = 1) -> bytes:
    from models.synthetic import make_survey
    from tests.models.inference.test_resident import encoded

    photo, _ = make_survey(width, height, seed=5, cracks=6)
    return encoded(photo, fmt, orientation)


def test_resident_path_in_fp32_makes_every_decision_the_cpu_makes(synthetic_model):
    """PNG (the same decoded pixels on both paths), no autocast and no TF32: all tiles agree."""
    from models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(synthetic_model.path)
    data = survey_bytes(960, 640, "PNG")
    cpu = Predictor(ckpt, InferenceConfig(device="cpu", cpu_bf16=False)).inspect_bytes(
        data, tile=48, stride=24
    )
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        gpu = Predictor(ckpt, InferenceConfig(device="cuda", amp=False)).inspect_bytes(
            data, tile=48, stride=24
        )
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul
    assert gpu.model["precision"] == "float32" and gpu.timings["device_peak_mb"] > 0
    assert np.array_equal(gpu.table.defect, cpu.table.defect)
    np.testing.assert_allclose(gpu.table.probs, cpu.table.probs, atol=1e-4)


def test_resident_jpeg_path_in_bf16_agrees_with_the_cpu(synthetic_model):
    """nvjpeg decode (EXIF-rotated), device tiles, bf16: >= 99.5% of decisions as on the CPU."""
    from models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(synthetic_model.path)
    data = survey_bytes(1200, 800, "JPEG", orientation=6)
    cpu = Predictor(ckpt, InferenceConfig(device="cpu", cpu_bf16=False)).inspect_bytes(
        data, tile=48, stride=24
    )
    predictor = Predictor(ckpt, InferenceConfig(device="cuda"))
    assert predictor.resident and predictor.batch_size >= 8
    gpu = predictor.inspect_bytes(data, tile=48, stride=24)
    assert (gpu.height, gpu.width) == (cpu.height, cpu.width) == (1200, 800)
    assert gpu.model["precision"] in ("bfloat16", "float16")
    agree = float(np.mean(gpu.table.defect == cpu.table.defect))
    assert agree >= 0.995, agree


def test_a_100_mp_photo_fits_in_16_gb():
    """Peak device memory of a 10,000 x 10,000 JPEG at 224 px tiles with resnet50, as reported."""
    from PIL import Image

    from models.backbones import build_classifier
    from models.checkpoint import Checkpoint

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((10_000, 10_000)).save(buffer, format="JPEG", quality=85)
    torch.manual_seed(0)
    ckpt = Checkpoint(
        backbone="resnet50",
        classes=["crack", "no_crack"],
        defect_classes=["crack"],
        input_size=224,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        model_state=build_classifier("resnet50", 2).state_dict(),
    )
    crack_map = Predictor(ckpt, InferenceConfig(device="cuda")).inspect_bytes(buffer.getvalue())
    assert len(crack_map.table) == 45 * 45
    assert crack_map.timings["device_peak_mb"] < 16 * 1024, crack_map.timings

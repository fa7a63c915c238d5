"""CUDA paths: the losses in float32 on the GPU, AMP training, and bf16 inference. Skipped without a GPU."""

from __future__ import annotations

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
    cpu = Predictor(ckpt, InferenceConfig(device="cpu")).inspect_array(image, tile=32, stride=16)
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

"""The pretrained models bundled inside the package (issue 10, part 4): each loads by name, stays
within its size budget, carries a card whose numbers come from its metadata, and denoises."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from leanse.checkpoint import load_checkpoint
from leanse.cli import main
from leanse.complexity import count_parameters
from leanse.metrics import si_sdr
from leanse.pretrained import bundled_models

RATE = 16000
BUNDLED = bundled_models()


def voiced(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic series, syllable-gated at 4 Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    wav = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 25) if k * f0 < 7000)
    gate = np.clip(np.sin(2 * np.pi * 4 * t) + 0.3, 0, 1)
    return (0.1 * wav * gate).astype(np.float32)


def test_the_two_promised_models_are_bundled():
    assert {"leanse-base", "leanse-tiny"} <= set(BUNDLED)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_a_bundled_model_is_a_small_checkpoint_with_a_card_that_matches_its_metadata(name):
    folder = BUNDLED[name]
    assert (folder / "model.safetensors").stat().st_size < 5_000_000  # "a few MB at most"
    meta = json.loads((folder / "leanse.json").read_text())["meta"]
    card = (folder / "CARD.md").read_text()
    for metric, value in meta["dev_set"].items():  # meta keeps 3 decimals, the card's table 2 or 3
        printed = {f"{value + d:.{digits}f}" for d in (-0.0005, 0, 0.0005) for digits in (2, 3)}
        assert any(text in card for text in printed), (metric, value)
    assert "LICENSES" in card or "licen" in card.lower()
    model = load_checkpoint(name)
    if name == "leanse-tiny":
        assert count_parameters(model) <= 100_000


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_leanse_enhance_with_a_bundled_name_denoises_a_voiced_signal(name, tmp_path):
    clean = voiced(3.0, 150.0, seed=0)
    noise = np.random.default_rng(1).standard_normal(clean.size).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2))  # 0 dB SNR
    sf.write(tmp_path / "noisy.wav", clean + noise, RATE)
    assert main(["enhance", str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out"), "--model", name]) == 0
    enhanced, rate = sf.read(tmp_path / "out" / "noisy.wav", dtype="float32")
    assert rate == RATE and enhanced.shape == clean.shape and np.isfinite(enhanced).all()
    assert si_sdr(enhanced, clean) > si_sdr(clean + noise, clean) + 3.0

"""leanse.metrics on real (synthetic, speech-like) signals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leanse import losses, metrics


def speech_like(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal: PESQ's VAD and STOI treat it as speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 40 * rng.random() + 30 * np.sin(2 * np.pi * 0.7 * t)  # gliding pitch
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20) if k * f0.max() < rate / 2)
    syllables = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2  # ~6 syllables a second
    pauses = np.sin(2 * np.pi * 0.4 * t) > -0.3  # and short pauses between "words"
    return (0.1 * voiced * syllables * pauses).astype(np.float32)


def add_noise(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


@pytest.fixture(scope="module")
def pair16() -> tuple[np.ndarray, np.ndarray]:
    clean = speech_like(3.0, 16000)
    return clean, add_noise(clean, 5.0)


def test_si_sdr_perfect_estimate_is_very_high(pair16):
    clean, _ = pair16
    assert metrics.si_sdr(clean, clean) > 80


def test_si_sdr_is_scale_and_offset_invariant(pair16):
    clean, noisy = pair16
    base = metrics.si_sdr(noisy, clean)
    assert metrics.si_sdr(3.7 * noisy, clean) == pytest.approx(base, abs=1e-6)
    assert metrics.si_sdr(noisy, 0.2 * clean) == pytest.approx(base, abs=1e-6)
    # zero-mean convention: a DC offset does not count as distortion
    assert metrics.si_sdr(noisy + 0.5, clean) == pytest.approx(base, abs=1e-6)
    assert metrics.si_sdr(noisy + 0.5, clean, zero_mean=False) < base - 3


def test_si_sdr_matches_the_input_snr(pair16):
    clean, noisy = pair16
    # white noise is nearly orthogonal to the clean signal, so SI-SDR ~ SNR (5 dB)
    assert metrics.si_sdr(noisy, clean) == pytest.approx(5.0, abs=0.3)


def test_si_sdr_agrees_with_the_torch_loss(pair16):
    clean, noisy = pair16
    rng = np.random.default_rng(3)
    # realistic SI-SDRs (5..20 dB): near 90 dB float32 rounding of the residual dominates
    est = np.stack([noisy, 0.5 * clean + 0.1 + 0.003 * rng.standard_normal(clean.shape),
                    clean + 0.01 * rng.standard_normal(clean.shape)])
    ref = np.stack([clean, clean, clean])
    ours = metrics.si_sdr(est, ref)  # [3]
    theirs = losses.si_sdr(torch.from_numpy(est.astype(np.float32)), torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)  # float64 vs float32 rounding
    assert metrics.si_sdr(est[0], ref[0]) == pytest.approx(float(ours[0]))


def test_si_sdri(pair16):
    clean, noisy = pair16
    assert metrics.si_sdr_improvement(noisy, clean, noisy) == 0.0
    assert metrics.si_sdr_improvement(clean, clean, noisy) > 70


def test_pesq_wideband_and_narrowband(pair16):
    clean, noisy = pair16
    assert metrics.pesq_score(clean, clean, 16000) == pytest.approx(4.64, abs=0.01)  # P.862.2 max
    assert metrics.pesq_score(clean, noisy, 16000) < 2.5
    clean8 = speech_like(3.0, 8000)
    assert metrics.pesq_mode(8000) == ("nb", 8000)
    assert metrics.pesq_score(clean8, clean8, 8000) == pytest.approx(4.55, abs=0.01)  # P.862 max
    assert metrics.pesq_score(clean8, add_noise(clean8, 5.0), 8000) < 2.5


def test_pesq_other_rates_are_resampled_to_16k():
    assert metrics.pesq_mode(22050) == ("wb", 16000)
    clean = speech_like(3.0, 22050)
    assert metrics.pesq_score(clean, clean, 22050) == pytest.approx(4.64, abs=0.01)


def test_pesq_failures_are_none_not_zero(pair16):
    silence = np.zeros(3 * 16000, np.float32)
    assert metrics.pesq_score(silence, silence, 16000) is None  # NoUtterancesError territory
    short = speech_like(0.2, 16000)
    assert metrics.pesq_score(short, short, 16000) is None  # BufferTooShortError (< 1/4 s)
    # the pesq package cannot score an all-zero estimate (its C code yields NaN): a failure too
    clean, _ = pair16
    assert metrics.pesq_score(clean, np.zeros_like(clean), 16000) is None
    # ...but a merely very quiet estimate is scored (badly), not failed
    quiet = 1e-6 * np.random.default_rng(0).standard_normal(clean.shape)
    assert metrics.pesq_score(clean, quiet, 16000) < 1.5


def test_stoi_and_estoi(pair16):
    clean, noisy = pair16
    assert metrics.stoi_score(clean, clean, 16000) == pytest.approx(1.0, abs=1e-6)
    assert metrics.estoi_score(clean, clean, 16000) == pytest.approx(1.0, abs=1e-6)
    assert metrics.stoi_score(clean, noisy, 16000) < 0.95
    assert metrics.estoi_score(clean, noisy, 16000) < metrics.stoi_score(clean, noisy, 16000)
    silence = np.zeros(16000, np.float32)
    assert metrics.stoi_score(silence, silence, 16000) is None
    clicks = np.zeros(16000, np.float32)
    clicks[::8000] = 0.5
    assert metrics.stoi_score(clicks, clicks, 16000) is None  # pystoi's 1e-5 placeholder


def test_score_pair_reports_estimate_and_noisy_input(pair16):
    clean, noisy = pair16
    scores = metrics.score_pair(noisy, clean, noisy, 16000)
    assert set(scores) == set(metrics.METRICS)
    assert scores["si_sdri"] == 0.0
    assert scores["pesq"] == scores["pesq_noisy"]
    assert scores["stoi"] == scores["stoi_noisy"]
    perfect = metrics.score_pair(clean, clean, noisy, 16000)
    assert perfect["pesq"] > perfect["pesq_noisy"]
    assert perfect["si_sdri"] > 70


def test_shape_mismatch_is_an_error(pair16):
    clean, noisy = pair16
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.score_pair(noisy[:-1], clean, noisy, 16000)

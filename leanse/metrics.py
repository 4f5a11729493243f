"""Objective metrics on numpy waveforms: SI-SDR(i), PESQ (wb/nb), STOI, ESTOI.

Conventions (DESIGN.md, "Scoring, one way"):

* **SI-SDR** removes the mean of both signals first (Le Roux et al. 2019, "SDR -- half-baked or
  well done?"), then projects the estimate on the reference: ``alpha = <s_hat, s> / <s, s>``,
  ``SI-SDR = 10 log10(|alpha s|^2 / |s_hat - alpha s|^2)``. It is the same formula, with the same
  ``eps``, as the training loss :func:`leanse.losses.si_sdr`, computed here in float64.
* **SI-SDRi** is measured against the unprocessed mixture of the same file:
  ``SI-SDR(estimate, clean) - SI-SDR(noisy, clean)``.
* **PESQ** (ITU-T P.862) from the ``pesq`` package, per utterance: wideband (P.862.2) at 16 kHz,
  narrowband at 8 kHz. Any other rate is resampled to 16 kHz (soxr) and scored wideband, and
  :func:`pesq_mode` says so. A PESQ failure (no utterance found, buffer shorter than 1/4 s,
  an all-zero signal) is returned as ``None`` and must be counted as a failure, never as a zero.
* **STOI / ESTOI** (Taal et al. 2011; Jensen & Taal 2016) from ``pystoi``, which resamples to
  10 kHz internally. When pystoi finds too few non-silent frames it returns ``1e-5`` with a
  warning; that is reported here as a failure (``None``), like PESQ.

This module never imports torch, so the scoring worker processes of :mod:`leanse.evaluate` stay
light.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import numpy as np
import pesq as _pesq
import pystoi as _pystoi

from leanse.audio import resample

log = logging.getLogger(__name__)

#: Same constant as :data:`leanse.losses.EPS`, so the two SI-SDRs agree.
EPS = 1e-8

#: The rate PESQ runs at when the signal's own rate has no PESQ mode.
PESQ_FALLBACK_RATE = 16000

#: Names of the metrics :func:`score_pair` returns, in table order.
METRICS = (
    "si_sdr",
    "si_sdri",
    "pesq",
    "stoi",
    "estoi",
    "si_sdr_noisy",
    "pesq_noisy",
    "stoi_noisy",
    "estoi_noisy",
)

SI_SDR_CONVENTION = "zero-mean SI-SDR (Le Roux et al. 2019); SI-SDRi against the noisy input"


def si_sdr(est: np.ndarray, ref: np.ndarray, zero_mean: bool = True) -> float | np.ndarray:
    """Scale-invariant SDR in dB along the last axis: ``[..., T]`` -> ``[...]`` (a float for 1-D).

    Zero-mean by default (Le Roux et al. 2019); ``zero_mean=False`` reproduces code that skipped
    the mean removal.
    """
    est = np.asarray(est, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    _check_same_shape(est, ref, "si_sdr")
    if zero_mean:
        est = est - est.mean(axis=-1, keepdims=True)
        ref = ref - ref.mean(axis=-1, keepdims=True)
    alpha = np.sum(est * ref, axis=-1, keepdims=True) / (np.sum(ref**2, axis=-1, keepdims=True) + EPS)
    projection = alpha * ref  # the part of the estimate explained by the reference
    residual = est - projection
    value = 10 * np.log10(
        (np.sum(projection**2, axis=-1) + EPS) / (np.sum(residual**2, axis=-1) + EPS)
    )
    return float(value) if np.ndim(value) == 0 else value


def si_sdr_improvement(est: np.ndarray, ref: np.ndarray, noisy: np.ndarray) -> float | np.ndarray:
    """SI-SDRi in dB: ``si_sdr(est, ref) - si_sdr(noisy, ref)`` (same file's unprocessed input)."""
    return si_sdr(est, ref) - si_sdr(noisy, ref)


def pesq_mode(rate: int) -> tuple[Literal["wb", "nb"], int]:
    """The PESQ mode and the rate PESQ runs at for a signal at ``rate`` Hz.

    16 kHz -> wideband (P.862.2); 8 kHz -> narrowband (P.862); anything else is resampled to
    16 kHz and scored wideband.
    """
    if rate == 8000:
        return "nb", 8000
    return "wb", PESQ_FALLBACK_RATE


def pesq_score(ref: np.ndarray, est: np.ndarray, rate: int) -> float | None:
    """PESQ MOS-LQO of ``est`` against ``ref`` (both ``[T]``), or ``None`` when PESQ fails.

    Wideband at 16 kHz, narrowband at 8 kHz, other rates resampled to 16 kHz (see
    :func:`pesq_mode`). ``None`` means "no score" (e.g. ``NoUtterancesError``: no speech found in
    the reference, a buffer shorter than 1/4 s, or an all-zero estimate, which the ``pesq``
    package cannot score) and must be counted as a failure by callers.
    """
    ref, est = _as_mono_pair(ref, est, "pesq_score")
    mode, pesq_rate = pesq_mode(rate)
    if pesq_rate != rate:
        ref, est = resample(ref, rate, pesq_rate), resample(est, rate, pesq_rate)
    # The package divides both signals by their joint peak: all-zero input would become NaN.
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(est))):
        log.debug("PESQ failed: non-finite samples")
        return None
    if not (np.any(ref) and np.any(est)):
        # An all-zero reference has no utterance; an all-zero estimate makes the package's C code
        # return NaN (it then fails with a ValueError). Either way there is no PESQ to report.
        log.debug("PESQ failed: a signal is all zeros")
        return None
    try:
        return float(_pesq.pesq(pesq_rate, ref, est, mode))
    except (_pesq.PesqError, ValueError) as err:  # NoUtterancesError, BufferTooShortError, NaN
        log.debug("PESQ failed: %s: %s", type(err).__name__, err)
        return None


def stoi_score(ref: np.ndarray, est: np.ndarray, rate: int) -> float | None:
    """STOI (Taal et al. 2011) of ``est`` against ``ref``; ``None`` when pystoi cannot score."""
    return _pystoi_score(ref, est, rate, extended=False)


def estoi_score(ref: np.ndarray, est: np.ndarray, rate: int) -> float | None:
    """Extended STOI (Jensen & Taal 2016); ``None`` when pystoi cannot score."""
    return _pystoi_score(ref, est, rate, extended=True)


def _pystoi_score(ref: np.ndarray, est: np.ndarray, rate: int, extended: bool) -> float | None:
    ref, est = _as_mono_pair(ref, est, "stoi")
    if not np.any(ref):
        return None  # an all-zero reference has no frames to compare (pystoi would say 0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_pystoi.stoi(ref, est, rate, extended=extended))
    # pystoi's own failure signal: a warning and the placeholder 1e-5.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        log.debug("STOI failed: too few non-silent frames")
        return None
    return value


def score_pair(
    est: np.ndarray, ref: np.ndarray, noisy: np.ndarray, rate: int, dnsmos: bool = False
) -> dict[str, float | None]:
    """Every metric of one file: the estimate against the clean reference, and the noisy input.

    Returns the keys of :data:`METRICS`: ``si_sdr``, ``si_sdri``, ``pesq``, ``stoi``, ``estoi``
    for the estimate, and ``si_sdr_noisy``, ``pesq_noisy``, ``stoi_noisy``, ``estoi_noisy`` for
    the unprocessed input ("against the noisy input" columns). PESQ/STOI/ESTOI may be ``None``
    (failure). All three signals are ``[T]`` at ``rate`` Hz and must have the same length.
    ``dnsmos=True`` adds :data:`DNSMOS_KEYS` for the estimate and ``*_noisy`` for the input.
    """
    est, ref = _as_mono_pair(est, ref, "score_pair")
    noisy, _ = _as_mono_pair(noisy, ref, "score_pair")
    sdr = si_sdr(est, ref)
    sdr_noisy = si_sdr(noisy, ref)
    extra: dict[str, float | None] = {}
    if dnsmos:
        extra.update(dnsmos_score(est, rate))
        extra.update({f"{k}_noisy": v for k, v in dnsmos_score(noisy, rate).items()})
    return {
        **extra,
        "si_sdr": sdr,
        "si_sdri": sdr - sdr_noisy,
        "pesq": pesq_score(ref, est, rate),
        "stoi": stoi_score(ref, est, rate),
        "estoi": estoi_score(ref, est, rate),
        "si_sdr_noisy": sdr_noisy,
        "pesq_noisy": pesq_score(ref, noisy, rate),
        "stoi_noisy": stoi_score(ref, noisy, rate),
        "estoi_noisy": estoi_score(ref, noisy, rate),
    }


def _as_mono_pair(a: np.ndarray, b: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{where}: expected 1-D waveforms [T], got shape {a.shape}")
    _check_same_shape(a, b, where)
    return a, b


def _check_same_shape(a: np.ndarray, b: np.ndarray, where: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{where}: signals differ in shape {a.shape} vs {b.shape}; align them first")


#: DNSMOS P.835 columns (Reddy et al. 2022): speech signal, background, overall quality.
DNSMOS_KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")


def dnsmos_available() -> bool:
    """Whether the optional DNSMOS extra (``speechmos`` with its bundled ONNX models) is installed."""
    try:
        import speechmos  # noqa: F401
    except ImportError:
        return False
    return True


def dnsmos_score(wav: np.ndarray, rate: int) -> dict[str, float]:
    """Non-intrusive DNSMOS P.835 SIG / BAK / OVRL of one signal (no reference needed).

    Uses the models the ``speechmos`` package bundles (extra ``leanse[dnsmos]``), at 16 kHz (other
    rates are resampled). Clips shorter than the model's 9.01-s window are repeated to fill it, as
    the DNS Challenge's own script does; peaks above full scale are scaled down first (DNSMOS
    rejects them) - both are level-independent for the model's log-mel input.
    """
    try:
        from speechmos import dnsmos
    except ImportError:
        from leanse.errors import ConfigError

        raise ConfigError("DNSMOS needs the optional extra: pip install 'leanse[dnsmos]'") from None
    x = np.asarray(wav, dtype=np.float32)
    if rate != 16000:
        x = resample(x, rate, 16000)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 1.0:
        x = x / peak
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dnsmos.run(x, 16000)
    return {
        "dnsmos_sig": float(result["sig_mos"]),
        "dnsmos_bak": float(result["bak_mos"]),
        "dnsmos_ovrl": float(result["ovrl_mos"]),
    }

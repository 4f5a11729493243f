"""The records that flow through the data path: corpus reader -> Utterance -> mixer -> Mixture."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Utterance:
    """One clean speech file of a corpus.

    ``gender`` is ``"M"``, ``"F"`` or ``None`` when the corpus does not say; ``split`` is the
    corpus's own subset name (``train-clean-100``, ``dev-clean``, ...) or ``None``.
    """

    path: str
    speaker: str
    gender: str | None = None
    duration: float | None = None  # seconds
    split: str | None = None
    sample_rate: int | None = None


@dataclass(frozen=True)
class NoiseRecording:
    """One noise file (MUSAN ``noise/*/*.wav`` or any folder of noise)."""

    path: str
    category: str | None = None  # e.g. "free-sound", "sound-bible"
    duration: float | None = None


@dataclass
class Mixture:
    """One noisy example: ``noisy = clean + noise`` at ``snr`` dB (waveforms ``[T]`` float32).

    ``meta`` carries the labels a partition or report needs: ``snr``, ``speaker``, ``gender``,
    ``group`` and the source files, so every evaluation can be broken down by them.
    """

    id: str
    noisy: np.ndarray
    clean: np.ndarray
    sample_rate: int
    meta: dict[str, Any] = field(default_factory=dict)

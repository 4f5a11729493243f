"""Dynamic mixing: clean speech + noise at a chosen SNR, from a seeded generator.

One code path serves training and evaluation. A :class:`MixtureSpec` says *which* segment of
*which* utterance is mixed with *which* noise segment at *what* SNR; :meth:`Mixer.render` turns it
into a :class:`~leanse.data.records.Mixture`. Training draws specs on the fly (a new draw for every
example of every epoch, seeded by (seed, epoch, index) so runs are reproducible and data-parallel
ranks see different data); validation and test sets are fixed lists of specs drawn once from a
seed and stored as CSV, so every model is scored on the same mixtures.

Level normalisation (000 Sec. 3: "a normalized 1-second snippet ... with a normalized 1-second
snippet from a random training noise"): speech and noise segments are each scaled to the same RMS
(``target_rms``) before the noise is scaled to the SNR. ``mixture_norm="unit_rms"`` then scales the
mixture to unit RMS and the target by the same factor (004); ``"standardize"`` gives the mixture
unit variance (003).
"""

from __future__ import annotations

import csv
import os
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from leanse.audio import resample
from leanse.data.augment import Augmenter, AugmentOptions
from leanse.data.records import Mixture, NoiseRecording, Utterance
from leanse.errors import ConfigError, CorpusError

EPS = 1e-8


@dataclass(frozen=True)
class MixtureSpec:
    """A reproducible recipe for one mixture (one row of a fixed validation / test list)."""

    id: str
    clean: str
    clean_offset: float  # seconds into the utterance
    noise: str
    noise_offset: float  # seconds into the noise
    snr: float  # dB
    seconds: float  # segment length; the whole utterance for evaluation lists if so configured
    speaker: str = ""
    gender: str = ""
    group: str = ""


@dataclass
class MixingOptions:
    """How mixtures are drawn.

    ``snrs`` (a list, one drawn uniformly per example, 000) or ``snr_range`` ([low, high] dB,
    uniform, 001/003). ``segment_seconds``: training segment length (``None`` = whole utterance).
    """

    sample_rate: int = 16000
    segment_seconds: float | None = 1.0
    snrs: list[float] | None = None
    snr_range: list[float] | None = None
    target_rms: float = 0.05
    mixture_norm: str | None = None  # None, "unit_rms" (004) or "standardize" (003)
    augment: AugmentOptions | None = None  # speed / EQ / reverb / band-limit / gain / clipping

    def __post_init__(self) -> None:
        if (self.snrs is None) == (self.snr_range is None):
            raise ConfigError("data: give exactly one of 'snrs' (a list of dB) or 'snr_range' ([low, high])")
        if self.snr_range is not None and (len(self.snr_range) != 2 or self.snr_range[0] > self.snr_range[1]):
            raise ConfigError(f"data.snr_range: expected [low, high] in dB, got {self.snr_range}")
        if self.sample_rate not in (8000, 16000):
            raise ConfigError(f"data.sample_rate: leanse mixes at 8000 or 16000 Hz, not {self.sample_rate}")
        if self.mixture_norm not in (None, "unit_rms", "standardize"):
            raise ConfigError(
                f"data.mixture_norm: expected null, unit_rms or standardize, got {self.mixture_norm!r}"
            )

    def draw_snr(self, rng: np.random.Generator) -> float:
        if self.snrs is not None:
            return float(self.snrs[rng.integers(len(self.snrs))])
        return float(rng.uniform(*self.snr_range))


def example_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator for one example, derived from the seed and keys with crc32 (stable across
    processes, unlike ``hash()`` which Python salts per process)."""
    key = zlib.crc32(repr((seed, *keys)).encode())
    return np.random.default_rng([seed & 0xFFFFFFFF, key])


class AudioReader:
    """Reads a segment of a file at the mixing rate, caching whole files when the corpus is small.

    Caching matters for the demo corpus (minutes of audio, read thousands of times an epoch);
    LibriSpeech-scale corpora are read segment by segment with ``soundfile`` seeks instead.
    """

    def __init__(self, sample_rate: int, cache: bool) -> None:
        self.sample_rate = sample_rate
        self.cache = cache
        self._cache: dict[str, np.ndarray] = {}

    def whole(self, path: str) -> np.ndarray:
        if path in self._cache:
            return self._cache[path]
        wav, rate = sf.read(path, dtype="float32", always_2d=True)
        wav = resample(wav.mean(axis=1), rate, self.sample_rate)
        if self.cache:
            self._cache[path] = wav
        return wav

    def segment(self, path: str, offset: float, seconds: float | None) -> np.ndarray:
        if self.cache or seconds is None:
            wav = self.whole(path)
            start = int(round(offset * self.sample_rate))
            stop = None if seconds is None else start + int(round(seconds * self.sample_rate))
            return wav[start:stop]
        rate = sf.info(path).samplerate
        start = int(round(offset * rate))
        frames = int(round(seconds * rate)) + 1
        wav, _ = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
        wav = resample(wav.mean(axis=1), rate, self.sample_rate)
        return wav[: int(round(seconds * self.sample_rate))]


def fit_length(wav: np.ndarray, length: int, tile: bool = False) -> np.ndarray:
    """Cut to ``length`` samples, or lengthen: tile (noise) or zero-pad at the end (speech)."""
    if len(wav) >= length:
        return wav[:length]
    if not tile:
        return np.pad(wav, (0, length - len(wav)))
    repeats = int(np.ceil(length / max(len(wav), 1)))
    return np.tile(wav, repeats)[:length]


class Mixer:
    """Draws and renders mixtures of ``utterances`` with ``noises`` under ``options``."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        noises: Sequence[NoiseRecording],
        options: MixingOptions,
        groups: dict[str, str] | None = None,
        cache: bool | None = None,
    ) -> None:
        if not utterances:
            raise CorpusError("no speech utterances to mix (the partition or corpus is empty)")
        if not noises:
            raise CorpusError("no noise recordings to mix")
        self.utterances = list(utterances)
        self.noises = list(noises)
        self.options = options
        self.groups = groups or {}
        if cache is None:  # cache small corpora in memory (< 2 h of audio)
            total = sum(u.duration or 0 for u in self.utterances) + sum(n.duration or 0 for n in self.noises)
            cache = total < 7200
        self.reader = AudioReader(options.sample_rate, cache)
        augment = options.augment
        self.augmenter = Augmenter(augment, options.sample_rate) if augment is not None and augment.active else None

    def draw(self, rng: np.random.Generator, id: str, seconds: float | None = ...) -> MixtureSpec:
        """Draw one spec: a random utterance, segment, noise, noise offset and SNR."""
        seconds = self.options.segment_seconds if seconds is ... else seconds
        utterance = self.utterances[rng.integers(len(self.utterances))]
        noise = self.noises[rng.integers(len(self.noises))]
        duration = utterance.duration or 0.0
        if seconds is None:
            seconds = duration
            clean_offset = 0.0
        else:
            clean_offset = float(rng.uniform(0, max(duration - seconds, 0.0)))
        noise_offset = float(rng.uniform(0, max((noise.duration or 0.0) - seconds, 0.0)))
        return MixtureSpec(
            id=id,
            clean=utterance.path,
            clean_offset=round(clean_offset, 4),
            noise=noise.path,
            noise_offset=round(noise_offset, 4),
            snr=round(self.options.draw_snr(rng), 3),
            seconds=round(seconds, 4),
            speaker=utterance.speaker,
            gender=utterance.gender or "",
            group=self.groups.get(utterance.speaker, ""),
        )

    def render(self, spec: MixtureSpec) -> Mixture:
        """Read the two segments, normalise levels, scale the noise to the SNR and add."""
        rate = self.options.sample_rate
        length = int(round(spec.seconds * rate))
        clean = fit_length(self.reader.segment(spec.clean, spec.clean_offset, spec.seconds), length)
        noise = fit_length(self.reader.segment(spec.noise, spec.noise_offset, spec.seconds), length, tile=True)
        augmented: dict = {}
        if self.augmenter is not None:
            rng = example_rng(0, "augment", spec.id, spec.clean, spec.noise)
            clean, augmented = self.augmenter.speech(clean, rng)
            noise = self.augmenter.noise(noise, rng)
        target = self.options.target_rms
        clean = clean * (target / (_rms(clean) + EPS))
        noise = noise * (target / (_rms(noise) + EPS)) * 10 ** (-spec.snr / 20)
        noisy = clean + noise
        if self.augmenter is not None:
            noisy, clean, after = self.augmenter.mixture(noisy, clean, rng)
            augmented.update(after)
        if self.options.mixture_norm == "unit_rms":
            scale = 1.0 / (_rms(noisy) + EPS)
            noisy, clean = noisy * scale, clean * scale
        elif self.options.mixture_norm == "standardize":
            mean, std = noisy.mean(), noisy.std() + EPS
            noisy, clean = (noisy - mean) / std, clean / std
        meta = {k: v for k, v in asdict(spec).items() if k not in ("clean_offset", "noise_offset")}
        meta["snr_class"] = self.snr_class(spec.snr)
        meta.update(augmented)
        return Mixture(spec.id, noisy.astype(np.float32), clean.astype(np.float32), rate, meta)

    def snr_class(self, snr: float) -> int:
        """Index of ``snr`` in the SNR list (the SNR gate's label, 000); -1 for SNR ranges."""
        if self.options.snrs is None:
            return -1
        return int(np.argmin([abs(snr - s) for s in self.options.snrs]))

    def fixed_specs(self, count: int, seed: int, prefix: str, seconds: float | None = ...) -> list[MixtureSpec]:
        """A fixed, seeded list of ``count`` specs (validation / test sets)."""
        return [
            self.draw(example_rng(seed, prefix, i), f"{prefix}-{i:05d}", seconds) for i in range(count)
        ]


def _rms(wav: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0


SPEC_FIELDS = [f.name for f in fields(MixtureSpec)]


def write_csv_atomic(path: str | os.PathLike, fieldnames: Sequence[str], rows: Sequence[dict]) -> Path:
    """Write rows as CSV beside ``path`` and move it into place: a crash never leaves half a list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def write_specs(path: str | os.PathLike, specs: Sequence[MixtureSpec]) -> Path:
    """Store a fixed list as CSV (atomic), so the exact same mixtures can be rebuilt later."""
    return write_csv_atomic(path, SPEC_FIELDS, [asdict(spec) for spec in specs])


def read_specs(path: str | os.PathLike) -> list[MixtureSpec]:
    """Read a list written by :func:`write_specs`."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != SPEC_FIELDS:
            raise CorpusError(f"{path}: not a leanse mixture list (columns {reader.fieldnames})")
        specs = []
        for row in reader:
            for key in ("clean_offset", "noise_offset", "snr", "seconds"):
                row[key] = float(row[key])
            specs.append(MixtureSpec(**row))
    return specs

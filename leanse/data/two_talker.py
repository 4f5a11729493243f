"""Noisy reverberant two-talker mixtures: the data of paper 002 (Sec. 3.1).

002 Sec. 3.1, step by step, and how :meth:`TwoTalkerMixer.render` does it:

1. "two speech signals and one noise signal are randomly selected" -- two utterances of two
   *different* speakers and one noise recording (LibriSpeech + MUSAN here, see DATA.md; the paper's
   noise was the 100 Nonspeech Sounds corpus).
2. "The overlap ratio between the two speakers is uniformly sampled between 0% and 100%, and the
   two speech signals are shifted accordingly" -- each talker speaks for ``A = T / (2 - r)``
   samples of the ``T``-sample mixture, one from the start and the other up to the end, so they
   overlap on ``r * A`` samples: ``r = 0`` gives two halves, ``r = 1`` full overlap. Which talker
   starts is random. (An utterance shorter than ``A`` is zero-padded, so it overlaps less.)
3. "... and rescaled to a random relative SNR between 0 and 5 dB" -- talker 0 is louder than
   talker 1 by that many dB, powers measured over each talker's active span.
4. "The relative SNR between the power of the sum of the two clean speech signals and the noise is
   randomly sampled between 10 and 20 dB" -- the noise is scaled against ``s_0 + s_1``, before
   reverberation (the order of the paper's text).
5. "The transformed signals are then convolved with the room impulse responses simulated by the
   image method" -- each talker and the noise are point sources in one shoebox room
   (:mod:`leanse.data.reverb`: 3-10 x 3-10 x 2.5-4 m, T60 0.1-0.5 s), one microphone.
   ``reverberant_noise: false`` adds the noise dry instead.
6. "the echoic signals are summed to create the mixture".

**Targets.** By default each talker's *reverberant (echoic)* signal at the microphone is its
target: 002 trains a plain separation model (no dereverberation) with an SNR loss on the echoic
mixture and evaluates it the same way, which only makes sense with echoic references (002 also
uses A2T, a training aid for exactly this reverberant-target set-up). ``target: dry`` instead gives
each talker's *dry* signal, delayed and scaled like its direct path so it lines up with the
mixture (a dereverberation + separation task).

**Level.** Talkers are read at ``target_rms`` before step 3; afterwards the mixture and its
sources are scaled together as ``data.mixture_norm`` says: ``null`` -> mixture RMS
``target_rms``; ``unit_rms`` -> mixture RMS 1; ``standardize`` -> zero-mean, unit-variance mixture.

**Fixed lists.** Validation and test sets are seeded lists of :class:`TwoTalkerSpec` (stored as
CSV by :func:`write_two_talker_specs`), so every model is scored on the same mixtures. 002's
training set is a fixed set of 20000 mixtures too (``fixed_train: true``); ``fixed_train: false``
draws new ones every epoch. Rooms are drawn per mixture (002) or, with ``rir_pool: n``, from a
seeded pool of ``n`` rooms per split (tiny recipes: image-method simulation costs up to seconds).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from leanse.data.datamodule import Corpus, DataConfig, read_corpus
from leanse.data.mixing import EPS, AudioReader, MixingOptions, example_rng, fit_length, write_csv_atomic
from leanse.data.records import NoiseRecording, Utterance
from leanse.data.reverb import RIRCache, Room, RoomRanges, delay_and_scale, direct_path, draw_room, reverberate
from leanse.errors import ConfigError, CorpusError

#: Talkers per mixture (002) and point sources per room (the talkers + the noise).
NUM_TALKERS = 2
ROOM_SOURCES = NUM_TALKERS + 1
TARGETS = ("reverberant", "dry")


@dataclass
class TwoTalkerOptions:
    """The 002-specific part of the mixing (a groupcomm recipe's ``stages.mixing``); the noise SNR
    range, sample rate, segment length and level come from the recipe's ``data`` section."""

    overlap: list[float] = field(default_factory=lambda: [0.0, 1.0])  # ratio, uniform
    relative_level: list[float] = field(default_factory=lambda: [0.0, 5.0])  # dB, uniform
    room: RoomRanges = field(default_factory=RoomRanges)
    target: str = "reverberant"  # reverberant (002) | dry
    reverberant_noise: bool = True  # the noise is a point source in the room too
    rir_pool: int | None = None  # None: a new room per mixture (002); n: n seeded rooms per split
    rir_cache: int = 256  # impulse responses kept in memory (per process)
    fixed_train: bool = True  # 002: one fixed training set; false: new draws every epoch

    def __post_init__(self) -> None:
        if len(self.overlap) != 2 or not 0.0 <= self.overlap[0] <= self.overlap[1] <= 1.0:
            raise ConfigError(f"stages.mixing.overlap: expected [low, high] within [0, 1], got {self.overlap}")
        if len(self.relative_level) != 2 or self.relative_level[0] > self.relative_level[1]:
            raise ConfigError(f"stages.mixing.relative_level: expected [low, high] dB, got {self.relative_level}")
        if self.target not in TARGETS:
            raise ConfigError(f"stages.mixing.target: expected reverberant or dry, got {self.target!r}")
        if self.rir_pool is not None and self.rir_pool < 1:
            raise ConfigError(f"stages.mixing.rir_pool: expected null or a positive count, got {self.rir_pool}")


@dataclass(frozen=True)
class TwoTalkerSpec:
    """Everything needed to rebuild one mixture (one row of a fixed validation / test list)."""

    id: str
    seconds: float
    speech: tuple[str, str]  # talker 0, talker 1 (talker 0 is the louder)
    speakers: tuple[str, str]
    speech_offsets: tuple[float, float]  # seconds into each utterance
    overlap: float  # ratio r in [0, 1]
    first: int  # the talker that starts at sample 0
    relative_level: float  # dB, talker 0 over talker 1
    noise: str
    noise_offset: float
    snr: float  # dB, s_0 + s_1 over the noise, before reverberation
    room: Room


@dataclass
class SeparationMixture:
    """A mixture ``noisy`` ``[T]`` of ``sources`` ``[S, T]`` (plus noise), float32."""

    id: str
    noisy: np.ndarray
    sources: np.ndarray
    sample_rate: int
    meta: dict[str, Any] = field(default_factory=dict)


def active_samples(total: int, overlap: float) -> int:
    """Samples each talker speaks so that two spans, one from each end, overlap by ``overlap``."""
    return min(total, int(round(total / (2.0 - overlap))))


class TwoTalkerMixer:
    """Draws :class:`TwoTalkerSpec` s and renders them (002 Sec. 3.1, see the module docstring)."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        noises: Sequence[NoiseRecording],
        mixing: MixingOptions,
        options: TwoTalkerOptions,
        seed: int = 0,
        split: str = "train",
        cache: bool | None = None,
    ) -> None:
        by_speaker: dict[str, list[Utterance]] = {}
        for utterance in utterances:
            by_speaker.setdefault(utterance.speaker, []).append(utterance)
        if len(by_speaker) < NUM_TALKERS:
            raise CorpusError(
                f"the {split} speech has {len(by_speaker)} speaker(s); two-talker mixtures need at least 2"
            )
        if not noises:
            raise CorpusError(f"no {split} noise recordings to mix")
        self.speakers = sorted(by_speaker)
        self.by_speaker = by_speaker
        self.noises = list(noises)
        self.mixing = mixing
        self.options = options
        self.split = split
        if cache is None:  # small corpora (< 2 h of audio) are cached whole in memory
            total = sum(u.duration or 0 for u in utterances) + sum(n.duration or 0 for n in noises)
            cache = total < 7200
        self.reader = AudioReader(mixing.sample_rate, cache)
        self.rirs = RIRCache(options.rir_cache)
        self.rooms: list[Room] | None = None
        if options.rir_pool:
            self.rooms = [draw_room(example_rng(seed, split, "room", k), options.room, ROOM_SOURCES)
                          for k in range(options.rir_pool)]

    # ---------------------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, id: str, seconds: float) -> TwoTalkerSpec:
        """Draw two speakers, their segments, overlap, level, noise, SNR and room."""
        pair = rng.choice(len(self.speakers), size=NUM_TALKERS, replace=False)
        utterances = []
        for index in pair:
            choices = self.by_speaker[self.speakers[int(index)]]
            utterances.append(choices[int(rng.integers(len(choices)))])
        overlap = float(rng.uniform(*self.options.overlap))
        active = active_samples(int(round(seconds * self.mixing.sample_rate)), overlap) / self.mixing.sample_rate
        offsets = tuple(round(float(rng.uniform(0, max((u.duration or 0.0) - active, 0.0))), 4) for u in utterances)
        first = int(rng.integers(NUM_TALKERS))
        level = float(rng.uniform(*self.options.relative_level))
        noise = self.noises[int(rng.integers(len(self.noises)))]
        noise_offset = float(rng.uniform(0, max((noise.duration or 0.0) - seconds, 0.0)))
        snr = self.mixing.draw_snr(rng)
        if self.rooms is not None:
            room = self.rooms[int(rng.integers(len(self.rooms)))]
        else:
            room = draw_room(rng, self.options.room, ROOM_SOURCES)
        return TwoTalkerSpec(
            id=id,
            seconds=round(float(seconds), 4),
            speech=(utterances[0].path, utterances[1].path),
            speakers=(utterances[0].speaker, utterances[1].speaker),
            speech_offsets=offsets,  # type: ignore[arg-type]
            overlap=round(overlap, 4),
            first=first,
            relative_level=round(level, 3),
            noise=noise.path,
            noise_offset=round(noise_offset, 4),
            snr=round(snr, 3),
            room=room,
        )

    def fixed_specs(self, count: int, seed: int, prefix: str, seconds: float) -> list[TwoTalkerSpec]:
        """A fixed, seeded list of ``count`` specs (validation / test sets, 002's training set)."""
        return [self.draw(example_rng(seed, prefix, i), f"{prefix}-{i:05d}", seconds) for i in range(count)]

    # ---------------------------------------------------------------------------------------
    def render(self, spec: TwoTalkerSpec) -> SeparationMixture:
        """Steps 2-6 of 002 Sec. 3.1: place, level, add noise, reverberate, sum, normalise."""
        rate = self.mixing.sample_rate
        total = int(round(spec.seconds * rate))
        active = active_samples(total, spec.overlap)
        target_rms = self.mixing.target_rms

        # 2. Each talker speaks for `active` samples: `first` from 0, the other up to the end.
        dry = np.zeros((NUM_TALKERS, total))  # [2, T]
        for talker in range(NUM_TALKERS):
            segment = self.reader.segment(spec.speech[talker], spec.speech_offsets[talker], active / rate)
            segment = fit_length(np.asarray(segment, dtype=np.float64), active)
            segment = segment * (target_rms / (_rms(segment) + EPS))
            start = 0 if talker == spec.first else total - active
            dry[talker, start : start + active] = segment
        # 3. Talker 0 is `relative_level` dB louder than talker 1 (equal active spans: same ratio).
        dry[1] *= 10 ** (-spec.relative_level / 20)

        # 4. Noise at `snr` dB below the sum of the two talkers.
        noise = fit_length(self.reader.segment(spec.noise, spec.noise_offset, spec.seconds), total, tile=True)
        noise = np.asarray(noise, dtype=np.float64)
        noise *= _rms(dry.sum(0)) / (_rms(noise) + EPS) * 10 ** (-spec.snr / 20)

        # 5-6. Convolve with the room's impulse responses and sum the echoic signals.
        rirs = self.rirs(spec.room, rate)  # talker 0, talker 1, noise
        echoic = np.stack([reverberate(dry[t], rirs[t]) for t in range(NUM_TALKERS)])  # [2, T]
        noise = reverberate(noise, rirs[NUM_TALKERS]) if self.options.reverberant_noise else noise
        noisy = echoic.sum(0) + noise  # [T]
        if self.options.target == "reverberant":
            sources = echoic
        else:  # the dry talkers, lined up with (and scaled like) their direct paths
            sources = np.stack([delay_and_scale(dry[t], *direct_path(rirs[t])) for t in range(NUM_TALKERS)])

        noisy, sources = self._normalise(noisy, sources)
        meta = {
            "snr": spec.snr,
            "overlap": spec.overlap,
            "relative_level": spec.relative_level,
            "t60": spec.room.t60,
            "room": "x".join(f"{d:g}" for d in spec.room.dims),
            "speakers": "+".join(spec.speakers),
        }
        return SeparationMixture(spec.id, noisy.astype(np.float32), sources.astype(np.float32), rate, meta)

    def _normalise(self, noisy: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        norm = self.mixing.mixture_norm
        if norm == "standardize":
            std = noisy.std() + EPS
            return (noisy - noisy.mean()) / std, sources / std
        scale = (1.0 if norm == "unit_rms" else self.mixing.target_rms) / (_rms(noisy) + EPS)
        return noisy * scale, sources * scale


def _rms(wav: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0


# ------------------------------------------------------------------------------------------------
# Splits, fixed lists and the dataset


@dataclass
class TwoTalkerMixers:
    train: TwoTalkerMixer
    valid: TwoTalkerMixer
    test: TwoTalkerMixer
    valid_specs: list[TwoTalkerSpec]
    test_specs: list[TwoTalkerSpec]


def mixture_seconds(data: DataConfig) -> tuple[float, float]:
    """(training, evaluation) mixture length: ``segment_seconds`` and ``eval_segment_seconds``
    (which defaults to the training length: 002 uses 4-s mixtures throughout)."""
    if not data.segment_seconds:
        raise ConfigError("data.segment_seconds: two-talker mixtures need a fixed length (002: 4.0 s)")
    return float(data.segment_seconds), float(data.eval_segment_seconds or data.segment_seconds)


def build_two_talker_mixers(data: DataConfig, options: TwoTalkerOptions, corpus: Corpus | None = None) -> TwoTalkerMixers:
    """Mixers for train / valid / test (speech and noise of each split, rooms of each split) and
    the fixed validation and test lists."""
    if data.partition is not None:
        raise ConfigError("data.partition: two-talker mixtures are not partitioned; remove it")
    corpus = corpus or read_corpus(data)
    mixing = data.mixing_options(None)
    train = TwoTalkerMixer(corpus.train, corpus.train_noise, mixing, options, data.seed, "train")
    valid = TwoTalkerMixer(corpus.valid, corpus.valid_noise, mixing, options, data.seed, "valid")
    test = TwoTalkerMixer(corpus.test, corpus.test_noise, mixing, options, data.seed, "test")
    _, seconds = mixture_seconds(data)
    return TwoTalkerMixers(
        train, valid, test,
        valid.fixed_specs(data.valid_size, data.seed, "valid", seconds),
        test.fixed_specs(data.test_size, data.seed, "test", seconds),
    )


class TwoTalkerDataset(Dataset):
    """Serves ``{"noisy": [T], "sources": [2, T], ...}`` to the training engine.

    With ``specs`` it renders that fixed list. Without, item ``i`` is drawn from the seed: the same
    mixture every epoch when ``fixed`` (002's fixed training set), a new one per epoch otherwise.
    """

    def __init__(self, mixer: TwoTalkerMixer, size: int | None = None, seed: int = 0,
                 specs: list[TwoTalkerSpec] | None = None, fixed: bool = True, seconds: float = 4.0) -> None:
        self.mixer = mixer
        self.specs = specs
        self.size = len(specs) if specs is not None else int(size or 0)
        self.seed = seed
        self.fixed = fixed
        self.seconds = seconds
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def mixture(self, index: int) -> SeparationMixture:
        if self.specs is not None:
            return self.mixer.render(self.specs[index])
        keys = ("train", index) if self.fixed else ("train", self.epoch, index)
        spec = self.mixer.draw(example_rng(self.seed, *keys), "-".join(map(str, keys)), self.seconds)
        return self.mixer.render(spec)

    def __getitem__(self, index: int) -> dict[str, Any]:
        mixture = self.mixture(index)
        return {
            "noisy": torch.from_numpy(mixture.noisy),  # [T]
            "sources": torch.from_numpy(mixture.sources),  # [2, T]
            "snr": torch.tensor(mixture.meta["snr"], dtype=torch.float32),
            "id": mixture.id,
        }


def fixed_two_talker_mixtures(mixer: TwoTalkerMixer, specs: list[TwoTalkerSpec]) -> list[SeparationMixture]:
    """Render a fixed list (what the separation evaluation scores)."""
    return [mixer.render(spec) for spec in specs]


# ------------------------------------------------------------------------------------------------
# Fixed lists as CSV (tuples and the room as JSON cells)

SPEC_FIELDS = [f.name for f in dataclasses.fields(TwoTalkerSpec)]


def write_two_talker_specs(path: str | os.PathLike, specs: Sequence[TwoTalkerSpec]) -> Path:
    """Store a fixed list as CSV (atomic): the exact same mixtures can be rebuilt later."""
    rows = [{key: json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
             for key, value in asdict(spec).items()} for spec in specs]
    return write_csv_atomic(path, SPEC_FIELDS, rows)


def read_two_talker_specs(path: str | os.PathLike) -> list[TwoTalkerSpec]:
    """Read a list written by :func:`write_two_talker_specs`."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != SPEC_FIELDS:
            raise CorpusError(f"{path}: not a leanse two-talker list (columns {reader.fieldnames})")
        specs = []
        for row in reader:
            room = json.loads(row["room"])
            specs.append(TwoTalkerSpec(
                id=row["id"],
                seconds=float(row["seconds"]),
                speech=tuple(json.loads(row["speech"])),  # type: ignore[arg-type]
                speakers=tuple(json.loads(row["speakers"])),  # type: ignore[arg-type]
                speech_offsets=tuple(json.loads(row["speech_offsets"])),  # type: ignore[arg-type]
                overlap=float(row["overlap"]),
                first=int(row["first"]),
                relative_level=float(row["relative_level"]),
                noise=row["noise"],
                noise_offset=float(row["noise_offset"]),
                snr=float(row["snr"]),
                room=Room(tuple(room["dims"]), float(room["t60"]), tuple(room["mic"]),  # type: ignore[arg-type]
                          tuple(tuple(s) for s in room["sources"])),
            ))
    return specs

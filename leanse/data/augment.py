"""Augmentations that make a model trained on a few voices and noises hold up on real recordings.

A model trained on a handful of voices in a handful of rooms learns their colour, level and
bandwidth; real inputs differ in all of them. Each augmentation here is drawn per mixture, with a
probability from the recipe (``data.augment``), from a generator seeded by the mixture's id, so
fixed lists (the real-speech dev set) render the same every time:

* ``speed``: resampling by a factor in ``speed_range`` (tempo and pitch together, as Kaldi's
  speed perturbation), applied to the speech before anything else;
* ``eq``: a random spectral tilt plus two random peaking bands (+-``eq_db``), on the speech and,
  independently, on the noise (microphones and rooms colour both);
* ``reverb``: the speech convolved with an image-method room response (:mod:`leanse.data.reverb`)
  from a seeded pool of ``rir_pool`` rooms with T60 in ``t60``; the *target* is the reverberant
  speech (leanse denoises, it does not dereverberate);
* ``bandlimit``: noisy input and target low-passed at a cut-off drawn from ``bandlimit_hz``
  (narrowband sources, codecs);
* ``gain_db``: the mixture's level drawn from a range (target scaled alike);
* ``clip``: the noisy input (not the target) hard-clipped at a level a few dB under its peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from leanse.audio import resample
from leanse.errors import ConfigError


@dataclass
class AugmentOptions:
    """Per-mixture probabilities and ranges of each augmentation (all off by default)."""

    speed: float = 0.0
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1])
    eq: float = 0.0
    eq_db: float = 6.0
    reverb: float = 0.0
    t60: list[float] = field(default_factory=lambda: [0.15, 0.7])
    rir_pool: int = 48
    bandlimit: float = 0.0
    bandlimit_hz: list[float] = field(default_factory=lambda: [3400.0, 7000.0])
    gain: float = 0.0
    gain_db: list[float] = field(default_factory=lambda: [-20.0, 10.0])
    clip: float = 0.0
    clip_db: list[float] = field(default_factory=lambda: [1.0, 8.0])

    def __post_init__(self) -> None:
        for name in ("speed", "eq", "reverb", "bandlimit", "gain", "clip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"data.augment.{name}: a probability in [0, 1], got {getattr(self, name)}")
        for name in ("speed_range", "t60", "bandlimit_hz", "gain_db", "clip_db"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ConfigError(f"data.augment.{name}: expected [low, high], got {low_high}")
        if self.rir_pool < 1:
            raise ConfigError(f"data.augment.rir_pool: a positive number of rooms, got {self.rir_pool}")

    @property
    def active(self) -> bool:
        return any(getattr(self, n) > 0 for n in ("speed", "eq", "reverb", "bandlimit", "gain", "clip"))


def speed_perturb(wav: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``wav`` ``factor`` times faster (pitch follows), by resampling."""
    return resample(wav, int(round(sample_rate * factor)), sample_rate)


def random_eq(wav: np.ndarray, rng: np.random.Generator, sample_rate: int, max_db: float) -> np.ndarray:
    """A random tilt (first-order shelf) and two peaking bands, each within +-``max_db``."""
    out = wav.astype(np.float64)
    # Tilt: a one-pole pre-/de-emphasis mixed with the dry signal.
    tilt = rng.uniform(-0.9, 0.9)
    out = sps.lfilter([1.0, -tilt], [1.0], out) / (1 + abs(tilt))
    for _ in range(2):
        centre = float(np.exp(rng.uniform(np.log(150.0), np.log(0.45 * sample_rate))))
        gain = rng.uniform(-max_db, max_db)
        out = sps.lfilter(*_peaking(centre, gain, q=float(rng.uniform(0.5, 2.0)), rate=sample_rate), out)
    return out.astype(np.float32)


def _peaking(centre: float, gain_db: float, q: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking biquad (b, a)."""
    amplitude = 10 ** (gain_db / 40)
    omega = 2 * np.pi * centre / rate
    alpha = np.sin(omega) / (2 * q)
    b = np.array([1 + alpha * amplitude, -2 * np.cos(omega), 1 - alpha * amplitude])
    a = np.array([1 + alpha / amplitude, -2 * np.cos(omega), 1 - alpha / amplitude])
    return b / a[0], a / a[0]


def lowpass(wav: np.ndarray, cutoff: float, sample_rate: int) -> np.ndarray:
    """Zero-phase 8th-order Butterworth low-pass (no delay between input and target)."""
    if cutoff >= 0.49 * sample_rate:
        return wav
    sos = sps.butter(8, cutoff, btype="low", fs=sample_rate, output="sos")
    return sps.sosfiltfilt(sos, wav).astype(np.float32)


@lru_cache(maxsize=4)
def rir_pool(count: int, t60_low: float, t60_high: float, sample_rate: int) -> tuple[np.ndarray, ...]:
    """``count`` seeded image-method responses (computed once per process), each normalised so
    that its direct path has unit gain (reverberation changes colour and tail, not level)."""
    from leanse.data.mixing import example_rng
    from leanse.data.reverb import RoomRanges, draw_room, room_impulse_responses

    ranges = RoomRanges(length=[3.0, 10.0], width=[3.0, 10.0], height=[2.5, 4.0], t60=[t60_low, t60_high])
    responses = []
    for index in range(count):
        room = draw_room(example_rng(0, "augment-room", index), ranges, 1)
        rir = room_impulse_responses(room, sample_rate)[0]
        peak = int(np.argmax(np.abs(rir)))
        responses.append((rir[max(peak - 40, 0):] / rir[peak]).astype(np.float32))
    return tuple(responses)


class Augmenter:
    """Applies :class:`AugmentOptions` to one (clean, noise) pair before and after mixing."""

    def __init__(self, options: AugmentOptions, sample_rate: int) -> None:
        self.options = options
        self.sample_rate = sample_rate

    def speech(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Speed, EQ and reverberation of the speech. Returns the new target and what was done."""
        o, rate, info = self.options, self.sample_rate, {}
        if rng.random() < o.speed:
            factor = float(rng.uniform(*o.speed_range))
            length = len(clean)
            clean = speed_perturb(clean, factor, rate)
            clean = np.pad(clean, (0, max(length - len(clean), 0)))[:length]
            info["speed"] = round(factor, 3)
        if rng.random() < o.eq:
            clean = random_eq(clean, rng, rate, o.eq_db)
            info["eq"] = 1
        if rng.random() < o.reverb:
            responses = rir_pool(o.rir_pool, o.t60[0], o.t60[1], rate)
            index = int(rng.integers(len(responses)))
            clean = sps.fftconvolve(clean, responses[index])[: len(clean)].astype(np.float32)
            info["rir"] = index
        return clean, info

    def noise(self, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.options.eq:
            return random_eq(noise, rng, self.sample_rate, self.options.eq_db)
        return noise

    def mixture(self, noisy: np.ndarray, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        """Band-limit, level and clip the mixture (the target follows all but the clipping)."""
        o, info = self.options, {}
        if rng.random() < o.bandlimit:
            cutoff = float(rng.uniform(*o.bandlimit_hz))
            noisy, clean = lowpass(noisy, cutoff, self.sample_rate), lowpass(clean, cutoff, self.sample_rate)
            info["lowpass_hz"] = round(cutoff)
        if rng.random() < o.gain:
            scale = 10 ** (rng.uniform(*o.gain_db) / 20)
            noisy, clean = noisy * scale, clean * scale
        if rng.random() < o.clip:
            level = np.abs(noisy).max() * 10 ** (-rng.uniform(*o.clip_db) / 20)
            noisy = np.clip(noisy, -level, level)
            info["clip"] = 1
        return noisy, clean, info

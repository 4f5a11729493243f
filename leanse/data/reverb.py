"""Shoebox rooms and image-method room impulse responses (paper 002 Sec. 3.1).

002 Sec. 3.1: "The length and width of all the rooms are randomly sampled between 3 and 10 meters,
and the height is randomly sampled between 2.5 and 4 meters. The reverberation time (T60) is
randomly sampled between 0.1 and 0.5 seconds", and the signals are convolved with room impulse
responses "simulated by the image method [Allen & Berkley 1979]". 002 used gpuRIR; we use
``pyroomacoustics``' image source model on the CPU (same method).

What the paper leaves open, and what we do:

* **Wall absorption and image order** come from the T60 by Sabine's formula
  (``pyroomacoustics.inverse_sabine``): one energy absorption coefficient for all six walls, and
  the reflection order the T60 needs. No air absorption, no ray-traced tail, no randomised ISM.
  The T60 is thus the *designed* one, as with gpuRIR's Sabine estimate in 002; the decay of the
  simulated responses is longer, about 1.2-2.3x in elongated rooms (Schroeder-measured with
  ``pyroomacoustics.experimental.measure_rt60`` on eight drawn rooms).
* **Infeasible rooms**: a large room cannot reach a short T60 (Sabine would need absorption
  above 1; e.g. 10 x 10 x 4 m cannot go below ~0.18 s). Such (room, T60) draws are rejected and
  drawn again, so the rooms are uniform over the *feasible* part of the paper's ranges.
* **Positions** (not given in 002): the microphone and every source are uniform inside the room,
  at least ``wall_margin`` (0.5 m) from each wall, floor and ceiling.
* **Cost**: a small room with a long T60 needs ~90 reflection orders (seconds of CPU). The
  mixer caches responses per room (:class:`RIRCache`) and tiny recipes draw rooms from a small
  seeded pool (``rir_pool`` in :mod:`leanse.data.two_talker`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from leanse.errors import ConfigError

#: How many (room, T60) draws :func:`draw_room` tries before giving up on the ranges.
MAX_ROOM_DRAWS = 100


@dataclass
class RoomRanges:
    """The uniform ranges rooms are drawn from (002 Sec. 3.1), in metres and seconds."""

    length: list[float] = field(default_factory=lambda: [3.0, 10.0])
    width: list[float] = field(default_factory=lambda: [3.0, 10.0])
    height: list[float] = field(default_factory=lambda: [2.5, 4.0])
    t60: list[float] = field(default_factory=lambda: [0.1, 0.5])
    wall_margin: float = 0.5  # sources and microphone keep this far from every surface

    def __post_init__(self) -> None:
        for name in ("length", "width", "height", "t60"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
                raise ConfigError(f"room.{name}: expected [low, high] with 0 < low <= high, got {low_high}")
        if not 0 <= 2 * self.wall_margin < min(self.length[0], self.width[0], self.height[0]):
            raise ConfigError(f"room.wall_margin {self.wall_margin} m leaves no space in the smallest room")


@dataclass(frozen=True)
class Room:
    """One simulated room: size, T60, one microphone and ``len(sources)`` point sources."""

    dims: tuple[float, float, float]  # length, width, height (m)
    t60: float  # s
    mic: tuple[float, float, float]
    sources: tuple[tuple[float, float, float], ...]

    def key(self, sample_rate: int) -> tuple:
        """Hashable identity of its impulse responses (the cache key)."""
        return (self.dims, self.t60, self.mic, self.sources, int(sample_rate))


def sabine(t60: float, dims: Sequence[float]) -> tuple[float, int] | None:
    """``(energy absorption, max image order)`` that give ``t60`` in a ``dims`` shoebox, or
    ``None`` when no absorption in (0, 1] can (Sabine's formula, as pyroomacoustics computes it)."""
    import pyroomacoustics as pra

    try:
        absorption, max_order = pra.inverse_sabine(float(t60), list(dims))
    except ValueError:
        return None
    return float(absorption), int(max_order)


def draw_room(rng: np.random.Generator, ranges: RoomRanges, num_sources: int) -> Room:
    """A room, T60 and positions drawn uniformly from ``ranges`` (infeasible draws rejected)."""
    for _ in range(MAX_ROOM_DRAWS):
        dims = (
            round(float(rng.uniform(*ranges.length)), 3),
            round(float(rng.uniform(*ranges.width)), 3),
            round(float(rng.uniform(*ranges.height)), 3),
        )
        t60 = round(float(rng.uniform(*ranges.t60)), 4)
        if sabine(t60, dims) is not None:
            break
    else:
        raise ConfigError(
            f"no room in {ranges} reaches its T60 (Sabine would need absorption > 1); "
            "allow longer T60s or smaller rooms"
        )

    def position() -> tuple[float, float, float]:
        m = ranges.wall_margin
        return tuple(round(float(rng.uniform(m, side - m)), 3) for side in dims)  # type: ignore[return-value]

    mic = position()
    return Room(dims, t60, mic, tuple(position() for _ in range(num_sources)))


def room_impulse_responses(room: Room, sample_rate: int) -> list[np.ndarray]:
    """Image-method impulse responses from each source to the microphone: ``S`` arrays ``[L_s]``.

    Amplitudes as pyroomacoustics computes them (about ``1 / d`` for a direct path of ``d`` metres);
    every response is delayed by half its fractional-delay filter (40 samples) on top of the
    propagation delay.
    """
    import pyroomacoustics as pra

    design = sabine(room.t60, room.dims)
    if design is None:
        raise ConfigError(f"room {room.dims} m cannot have T60 {room.t60} s (Sabine absorption > 1)")
    absorption, max_order = design
    shoebox = pra.ShoeBox(list(room.dims), fs=int(sample_rate), materials=pra.Material(absorption),
                          max_order=max_order)
    for source in room.sources:
        shoebox.add_source(list(source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    return [np.asarray(rir, dtype=np.float64) for rir in shoebox.rir[0]]


def direct_path(rir: np.ndarray) -> tuple[int, float]:
    """``(delay in samples, gain)`` of the direct path: the strongest tap of the response.

    In a shoebox the direct sound is never weaker than a reflection (it travels the shortest path
    and is not absorbed), so the peak is the direct path.
    """
    delay = int(np.argmax(np.abs(rir)))
    return delay, float(rir[delay])


def reverberate(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``signal`` ``[T]`` convolved with ``rir``, cut to ``T`` samples (the echoic signal)."""
    from scipy.signal import fftconvolve

    return fftconvolve(signal, rir)[: len(signal)]


def delay_and_scale(signal: np.ndarray, delay: int, gain: float) -> np.ndarray:
    """``gain * signal`` delayed by ``delay`` samples, cut to ``T``: the dry (direct-path) signal."""
    out = np.zeros_like(signal)
    if delay < len(signal):
        out[delay:] = gain * signal[: len(signal) - delay]
    return out


class RIRCache:
    """A least-recently-used cache of impulse responses, one entry per (room, sample rate)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = int(capacity)
        self._entries: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()
        self.misses = 0

    def __call__(self, room: Room, sample_rate: int) -> list[np.ndarray]:
        key = room.key(sample_rate)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        self.misses += 1
        rirs = room_impulse_responses(room, sample_rate)
        if self.capacity > 0:
            self._entries[key] = rirs
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return rirs

"""Procedural noise for the embedded demo corpus.

DATA.md ("The embedded demo corpus"): no real noise recordings ship with any package we may
depend on, so the demo corpus fills the MUSAN ``noise/`` folders with procedural noise, which is
fast and deterministic: coloured noise (white / pink / brown / blue), mains hum with harmonics,
speech-shaped noise, babble made from *held-out* pseudo-speakers (never a LibriSpeech speaker, so
nothing leaks into the test speakers), and non-stationary amplitude envelopes over any of these.

Every generator takes a :class:`numpy.random.Generator` and is a pure function of it, so a seed
fixes the output exactly. All outputs are float32 ``[T]`` at ``NOISE_RMS`` with peaks below 1.
"""

from __future__ import annotations

import numpy as np

#: RMS level of every noise file (about -26 dBFS): mixers rescale to the wanted SNR anyway, and a
#: moderate level leaves headroom for the peaks of hum and bursty envelopes in 16-bit files.
NOISE_RMS = 0.05
#: Peak limit after levelling (16-bit files must not clip).
NOISE_PEAK = 0.95

#: Spectral slope exponent a in power ~ f**-a for each noise colour.
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}


def _level(x: np.ndarray) -> np.ndarray:
    """Scale to ``NOISE_RMS``; scale down further if a peak would exceed ``NOISE_PEAK``."""
    x = x - x.mean()
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms < 1e-12:
        raise ValueError("cannot level a silent noise signal")
    x = x * (NOISE_RMS / rms)
    peak = float(np.max(np.abs(x)))
    if peak > NOISE_PEAK:
        x = x * (NOISE_PEAK / peak)
    return x.astype(np.float32)


def _shape_spectrum(white: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Filter white noise by an amplitude response given on the ``rfft`` bins."""
    return np.fft.irfft(np.fft.rfft(white) * gain, n=white.size)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """White, pink, brown or blue noise: power spectral density ~ f**-a (``COLOURS``)."""
    if colour not in COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; use one of {sorted(COLOURS)}")
    white = rng.standard_normal(n)
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]  # no DC blow-up for pink/brown; _level removes the mean anyway
    return _level(_shape_spectrum(white, freqs ** (-COLOURS[colour] / 2)))


def mains_hum(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with 4-12 harmonics of random, roughly decaying amplitude, a slow
    frequency wobble (real mains drifts) and a little broadband hiss."""
    base = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / sample_rate
    wobble = 0.2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(base + wobble) / sample_rate
    hum = np.zeros(n)
    for k in range(1, int(rng.integers(4, 13)) + 1):
        # odd harmonics dominate transformer hum, hence the extra weight on them
        amplitude = rng.uniform(0.3, 1.0) / k ** rng.uniform(0.5, 1.2) * (1.5 if k % 2 else 1.0)
        hum += amplitude * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    hiss = rng.standard_normal(n) * 0.02 * np.sqrt(np.mean(hum**2))
    return _level(hum + hiss)


def long_term_spectrum(speech: list[np.ndarray], n_fft: int = 512) -> np.ndarray:
    """Average amplitude spectrum (``n_fft // 2 + 1`` bins) of speech, from Hann-windowed frames."""
    window = np.hanning(n_fft)
    power = np.zeros(n_fft // 2 + 1)
    frames = 0
    for wav in speech:
        if wav.size < n_fft:
            continue
        starts = np.arange(0, wav.size - n_fft + 1, n_fft // 2)
        spec = np.fft.rfft(np.stack([wav[s : s + n_fft] for s in starts]) * window, axis=1)
        power += np.sum(np.abs(spec) ** 2, axis=0)
        frames += len(starts)
    if frames == 0:
        raise ValueError("need at least one speech signal longer than n_fft samples")
    return np.sqrt(power / frames)


def speech_shaped_noise(n: int, spectrum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stationary noise with the long-term spectrum of speech (``long_term_spectrum``)."""
    bins = np.fft.rfftfreq(n)  # 0 .. 0.5 cycles/sample
    grid = np.linspace(0.0, 0.5, spectrum.size)
    return _level(_shape_spectrum(rng.standard_normal(n), np.interp(bins, grid, spectrum)))


def babble(
    n: int, talkers: list[list[np.ndarray]], n_talkers: int, rng: np.random.Generator
) -> np.ndarray:
    """Babble: the sum of ``n_talkers`` different talkers, each a random stretch of their
    concatenated utterances at its own random level (+-3 dB).

    ``talkers`` must hold only held-out pseudo-speakers (DATA.md: no leakage into test speakers).
    """
    if n_talkers > len(talkers):
        raise ValueError(f"babble of {n_talkers} talkers needs as many, got {len(talkers)}")
    mix = np.zeros(n)
    for index in rng.choice(len(talkers), size=n_talkers, replace=False):
        speech = np.concatenate(talkers[int(index)])
        while speech.size < n + 1:  # loop short talkers so every one covers the whole file
            speech = np.concatenate([speech, speech])
        start = int(rng.integers(0, speech.size - n))
        part = speech[start : start + n].astype(np.float64)
        part /= np.sqrt(np.mean(part**2)) + 1e-9
        mix += part * 10 ** (rng.uniform(-3, 3) / 20)
    return _level(mix)


def envelope(n: int, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A non-stationary amplitude envelope in [0.05, 1] and its kind's name.

    Kinds: ``drift`` (slow smoothed random level changes), ``bursts`` (on/off with 20 ms ramps),
    ``pulse`` (periodic amplitude modulation at 0.3-4 Hz), ``swell`` (fade in or out).
    """
    kind = str(rng.choice(["drift", "bursts", "pulse", "swell"]))
    t = np.arange(n) / sample_rate
    if kind == "drift":
        points = rng.uniform(0.0, 1.0, size=max(2, int(t[-1] * 2) + 2))  # a new level every ~0.5 s
        env = np.interp(t, np.linspace(0, t[-1], points.size), points)
    elif kind == "bursts":
        env = np.zeros(n)
        position = 0
        on = bool(rng.integers(0, 2))
        while position < n:
            length = int(rng.uniform(0.15, 1.5) * sample_rate)
            env[position : position + length] = 1.0 if on else 0.0
            position += length
            on = not on
        ramp = max(1, int(0.02 * sample_rate))
        env = np.convolve(env, np.ones(ramp) / ramp, mode="same")
    elif kind == "pulse":
        rate = rng.uniform(0.3, 4.0)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    else:
        env = np.linspace(0.0, 1.0, n) ** rng.uniform(0.5, 2.0)
        if rng.integers(0, 2):
            env = env[::-1]
    return 0.05 + 0.95 * np.clip(env, 0.0, 1.0), kind


def noise_types() -> list[str]:
    """The stationary noise types, in the order ``make_noise`` cycles through them."""
    return [*(f"{colour}" for colour in COLOURS), "hum", "speech-shaped", "babble"]


def make_noise(
    kind: str,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    talkers: list[list[np.ndarray]],
    spectrum: np.ndarray,
    modulate: bool,
) -> tuple[np.ndarray, str]:
    """One noise signal of a given type, optionally under a non-stationary envelope.

    Returns ``(wav, description)``, e.g. ``("pink+bursts")``. ``talkers`` and ``spectrum`` come
    from held-out pseudo-speakers only.
    """
    if kind in COLOURS:
        wav = coloured_noise(n, kind, rng)
    elif kind == "hum":
        wav = mains_hum(n, sample_rate, rng)
    elif kind == "speech-shaped":
        wav = speech_shaped_noise(n, spectrum, rng)
    elif kind == "babble":
        wav = babble(n, talkers, int(rng.integers(3, min(6, len(talkers)) + 1)), rng)
    else:
        raise ValueError(f"unknown noise type {kind!r}; use one of {noise_types()}")
    if not modulate:
        return wav, kind
    env, env_kind = envelope(n, sample_rate, rng)
    return _level(wav * env), f"{kind}+{env_kind}"

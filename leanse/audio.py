"""Audio I/O: the only module that reads or writes audio files.

Reading checks everything a user can get wrong (missing file, a folder, unreadable or empty audio,
NaN/Inf samples, all-silent audio) and raises :class:`~leanse.errors.AudioError` with a message
that says what to do. Writing is atomic (a temporary file in the same folder, then ``os.replace``)
and refuses to overwrite a file it was told is an input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from leanse.errors import AudioError

#: Peak absolute amplitude below which a signal counts as silent (about -120 dBFS).
SILENCE_PEAK = 1e-6


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """Header of an audio file, after checking that it exists and is a readable file."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory; pass an audio file (wav, flac, ogg)")
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(
            f"{path}: cannot read as audio ({err}); pass a wav, flac or ogg file"
        ) from None


def check_signal(wav: np.ndarray, where: str) -> None:
    """Raise :class:`AudioError` if ``wav`` is empty, non-finite or silent."""
    if wav.size == 0:
        raise AudioError(f"{where}: the audio is empty (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{where}: the audio contains NaN or Inf samples; repair or re-export it")
    if np.max(np.abs(wav)) < SILENCE_PEAK:
        raise AudioError(f"{where}: the audio is silent (peak below -120 dBFS); nothing to enhance")


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    check: bool = True,
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32.

    Args:
        path: the file.
        sample_rate: resample to this rate (soxr, high quality) when given.
        mono: average the channels; otherwise return ``[C, T]``.
        check: reject empty, non-finite and silent audio.

    Returns:
        ``(wav, rate)``: ``wav`` is ``[T]`` when ``mono`` else ``[C, T]``.
    """
    info = audio_info(path)
    if info.frames == 0:
        raise AudioError(f"{path}: the audio is empty (0 samples)")
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: cannot decode the audio ({err})") from None
    wav = wav.T  # [C, T]
    if mono:
        wav = wav.mean(axis=0)
    if check:
        check_signal(wav, str(path))
    if sample_rate is not None and sample_rate != rate:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), rate


def iter_audio_blocks(
    path: str | os.PathLike, block_frames: int, overlap_frames: int = 0
) -> Iterator[np.ndarray]:
    """Stream a file as ``[C, block]`` float32 blocks without reading it whole."""
    audio_info(path)
    with sf.SoundFile(str(path)) as f:
        for block in f.blocks(
            blocksize=block_frames, overlap=overlap_frames, dtype="float32", always_2d=True
        ):
            yield block.T


def resample(wav: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample along the last axis with soxr (``VHQ``); a no-op when the rates match."""
    if rate_in == rate_out:
        return wav
    if wav.ndim == 1:
        return soxr.resample(wav, rate_in, rate_out, quality="VHQ").astype(np.float32)
    return np.stack([resample(channel, rate_in, rate_out) for channel in wav])


def save_audio(
    path: str | os.PathLike,
    wav: np.ndarray,
    sample_rate: int,
    protect: tuple[str | os.PathLike, ...] = (),
    subtype: str | None = None,
) -> Path:
    """Write ``wav`` (``[T]`` or ``[C, T]``) atomically.

    The file is written beside its destination under a temporary name and moved into place, so a
    crash never leaves half a file. ``protect`` lists paths (the inputs) that must never be
    overwritten.
    """
    path = Path(path)
    for other in protect:
        if Path(other).exists() and path.exists() and path.resolve() == Path(other).resolve():
            raise AudioError(f"{path}: refusing to overwrite the input file; choose another output")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(wav, dtype=np.float32)
    data = data.T if data.ndim == 2 else data  # soundfile wants [T, C]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, data, sample_rate, subtype=subtype, format=_format_of(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".") or "wav"
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
    if suffix not in formats:
        raise AudioError(f"{path}: unsupported output format '.{suffix}'; use .wav, .flac or .ogg")
    return formats[suffix]


def rms(wav: np.ndarray) -> float:
    """Root mean square of a signal."""
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))


def normalize_rms(wav: np.ndarray, target_rms: float = 0.05, eps: float = 1e-8) -> np.ndarray:
    """Scale ``wav`` to the given RMS level (level normalisation of the mixers)."""
    return (wav * (target_rms / (rms(wav) + eps))).astype(np.float32)

"""Offline enhancement of files of any length, any sample rate, mono or stereo, in bounded memory.

Pipeline (every stage is streaming, so memory does not grow with the file's length)::

    file --blocks--> downmix to mono --> check NaN/Inf, track peak
         --> soxr.ResampleStream (file rate -> model rate)
         --> overlap-add chunker (model on ``chunk_seconds`` chunks, ``overlap_seconds`` cross-fade)
         --> soxr.ResampleStream (model rate -> file rate)
         --> soundfile.SoundFile writing a temporary file beside the output --> os.replace

Chunking. Chunk ``k`` covers input samples ``[k * hop, k * hop + L)`` with ``hop = L - O``
(``L`` chunk, ``O`` overlap). On the ``O`` samples two chunks share, their outputs are blended
with complementary fades ``fade_in = sin^2``, ``fade_out = cos^2``; these sum to one (not their
squares) because both chunks estimate the *same* signal, so the blend is an interpolation between
two estimates and a perfect model passes through unchanged. The last chunk is taken as the
*last* ``L`` samples of the signal (overlapping its predecessor by more than ``O``) so that no chunk
is shorter than ``L`` unless the whole signal is. Each chunk starts from the model's initial state:
a model with memory longer than the overlap loses it at chunk borders (see the tests for the
measured difference on the mask RNN).

Output. Mono, at the input's sample rate and with exactly the input's number of frames, named
``out_dir / <input stem><ext>`` where ``ext`` is the input's ``.wav``/``.flac`` and ``.wav``
otherwise; the files of an input *folder* keep their paths relative to it
(``DIR/a/b.flac`` -> ``out_dir/a/b.flac``). WAV output is 32-bit float (no clipping); FLAC is 24-bit PCM, clipped to [-1, 1] with
a note. Inputs are never overwritten; a failed file leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr
import torch

from leanse.audio import SILENCE_PEAK, audio_info, iter_audio_blocks
from leanse.errors import AudioError, ConfigError
from leanse.models.base import check_source, run_enhancement

#: Frames read from the input file per block (about 4 s at 16 kHz).
BLOCK_FRAMES = 65536
#: Chunks shorter than this (a whole signal shorter than one chunk) are zero-padded up to it so
#: that STFT models with reflection padding always see more than one window.
MIN_CHUNK_SECONDS = 0.5
OUTPUT_SUBTYPES = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}


@dataclass
class EnhanceReport:
    """What :func:`enhance_files` did to one input."""

    input: Path
    output: Path
    sample_rate: int  # the input's (and output's) rate
    model_rate: int
    channels: int  # of the input; the output is mono
    frames: int  # of the input and of the output
    seconds: float  # wall-clock time spent
    notes: list[str] = field(default_factory=list)  # downmix, resampling, clipping, ...

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return self.frames / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        return self.seconds / self.duration if self.frames else 0.0

    def __str__(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (f"{self.input} -> {self.output}: {self.duration:.1f} s at {self.sample_rate} Hz,"
                f" RTF {self.real_time_factor:.3f}{notes}")


def enhance_files(
    inputs: list[Path],
    out_dir: Path,
    model: torch.nn.Module,
    chunk_seconds: float = 10.0,
    overlap_seconds: float = 0.5,
    source: int | None = None,
    streamer_factory: Callable[[], Any] | None = None,
    **forward_kwargs: Any,
) -> list[EnhanceReport]:
    """Enhance audio files into ``out_dir``, streaming each one (bounded memory, any length).

    Everything that can be checked without decoding is checked for *all* inputs before anything is
    written: missing files, folders, unreadable or empty audio, two inputs with the same stem, an
    output that would overwrite an input, a separation model without ``source``. NaN/Inf samples
    and all-silent audio are found while streaming; the partial output is then deleted. Files
    enhanced before a failing one are complete and stay.

    Args:
        inputs: audio files (anything libsndfile reads: wav, flac, ogg, ...), mono or multichannel,
            or folders: every audio file under a folder is enhanced to the same relative path under
            ``out_dir`` (as DeepFilterNet's CLI does).
        out_dir: created if needed; must not be the folder of an input with the same output name.
        model: an :class:`~leanse.models.EnhancementModel` (``[B, T] -> [B, T]`` or ``[B, S, T]``).
        chunk_seconds: model input length; memory is proportional to it, not to the file.
        overlap_seconds: cross-faded overlap between consecutive chunks.
        source: the output to keep for a separation model (``num_sources > 1``).
        forward_kwargs: passed to ``model(wav, **forward_kwargs)`` (e.g. ``blocks=3``).
        streamer_factory: ``enhance --stream``: a new :class:`leanse.streaming.Streamer` per file
            replaces the chunker, so the model keeps its state over the whole file (no chunk
            borders); the output is the offline output of the whole file (of output ``source``
            for a separation model, which streams all its sources).
    """
    out_dir = Path(out_dir)
    forward = _model_forward(model, source, forward_kwargs)
    model_rate = int(model.sample_rate)
    _chunk_sizes(chunk_seconds, overlap_seconds, model_rate)  # validate before any work

    plans = _plan_outputs(expand_inputs([Path(p) for p in inputs], out_dir), out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AudioError(f"{out_dir}: exists and is not a folder; choose an output folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    reports = []
    with _eval_mode(model):
        for path, output, info in plans:
            start = time.perf_counter()
            notes = _notes(info.channels, info.samplerate, model_rate)
            file_format, subtype = OUTPUT_SUBTYPES[output.suffix.lower()]
            output.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=output.suffix, dir=output.parent)
            os.close(fd)
            try:
                with sf.SoundFile(
                    tmp, "w", samplerate=info.samplerate, channels=1, format=file_format,
                    subtype=subtype,
                ) as sink:
                    clipped = _stream(
                        _read_blocks(path), info.samplerate, info.frames, forward, model_rate,
                        chunk_seconds, overlap_seconds, sink.write, str(path),
                        clip=subtype.startswith("PCM"),
                        runner=_StreamRunner(streamer_factory(), source) if streamer_factory else None,
                    )
                os.replace(tmp, output)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            if clipped:
                notes.append(f"clipped {clipped} samples to [-1, 1] for {subtype} output")
            reports.append(
                EnhanceReport(
                    input=path, output=output, sample_rate=info.samplerate, model_rate=model_rate,
                    channels=info.channels, frames=info.frames,
                    seconds=time.perf_counter() - start, notes=notes,
                )
            )
    return reports


def enhance_waveform(
    model: torch.nn.Module,
    wav: np.ndarray,
    rate: int,
    chunk_seconds: float = 10.0,
    overlap_seconds: float = 0.5,
    source: int | None = None,
    **forward_kwargs: Any,
) -> np.ndarray:
    """Enhance an in-memory signal ``[T]`` (or ``[C, T]``, downmixed) at ``rate`` Hz -> ``[T]``.

    Same chunking, resampling and checks as :func:`enhance_files`; the output has the input's rate
    and length.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        wav = wav[None]  # [1, T]
    if wav.ndim != 2:
        raise AudioError(f"expected a waveform [T] or [C, T], got shape {wav.shape}")
    if wav.shape[1] == 0:
        raise AudioError("the audio is empty (0 samples)")
    forward = _model_forward(model, source, forward_kwargs)
    blocks = (wav[:, i : i + BLOCK_FRAMES] for i in range(0, wav.shape[1], BLOCK_FRAMES))
    pieces: list[np.ndarray] = []
    with _eval_mode(model):
        _stream(blocks, rate, wav.shape[1], forward, int(model.sample_rate), chunk_seconds,
                overlap_seconds, pieces.append, "waveform")
    return np.concatenate(pieces)


# --------------------------------------------------------------------------------------------
# streaming core


class _OverlapAdd:
    """Runs ``forward`` on chunks of ``chunk`` samples overlapping by ``overlap``; cross-fades.

    ``push`` returns the output samples that are final (no later chunk touches them); ``flush``
    returns the rest. Memory: at most one chunk of input, one chunk of history and one overlap of
    output, whatever the signal's length.
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], chunk: int, overlap: int,
                 min_chunk: int) -> None:
        self.forward = forward
        self.chunk, self.overlap, self.hop = chunk, overlap, chunk - overlap
        self.min_chunk = min(min_chunk, chunk)
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / max(overlap, 1)) ** 2
        self.fade_in = ramp.astype(np.float32)  # sin^2 + cos^2 = 1: interpolate two estimates
        self.fade_out = (1.0 - ramp).astype(np.float32)
        self.buffer = np.zeros(0, np.float32)  # input from the next chunk's start on
        self.previous: np.ndarray | None = None  # input of the last chunk run
        self.tail: np.ndarray | None = None  # its output on the overlap, not yet blended

    def push(self, x: np.ndarray) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, x])
        done = []
        while len(self.buffer) >= self.chunk:
            chunk = self.buffer[: self.chunk]
            y = self._blend(self.forward(chunk))  # [L]
            done.append(y[: self.hop])
            self.previous, self.tail = chunk, y[self.hop :].copy()
            self.buffer = self.buffer[self.hop :].copy()  # copy: do not pin the old array
        return np.concatenate(done) if done else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        remaining = len(self.buffer)
        if self.previous is None:  # the whole signal is shorter than one chunk
            if remaining == 0:
                return np.zeros(0, np.float32)
            padded = np.pad(self.buffer, (0, max(0, self.min_chunk - remaining)))
            return self.forward(padded)[:remaining]
        if remaining <= self.overlap:  # nothing new after the last chunk: its tail is final
            return self.tail
        # Last chunk: the final L samples of the signal, so it is as long as the others.
        history = np.concatenate([self.previous[: self.hop], self.buffer])[-self.chunk :]
        return self._blend(self.forward(history)[-remaining:])

    def _blend(self, y: np.ndarray) -> np.ndarray:
        if self.tail is not None and self.overlap:
            y = y.copy()
            y[: self.overlap] = self.tail * self.fade_out + y[: self.overlap] * self.fade_in
        return y


class _StreamRunner:
    """The chunker's ``push`` / ``flush`` over a :class:`leanse.streaming.Streamer`.

    A separation model's streamer returns every source (``[S, n]``); the runner keeps output
    ``source`` (checked by :func:`~leanse.models.base.check_source` before any audio is read),
    as the offline chunker keeps it through :func:`~leanse.models.base.run_enhancement`.
    """

    def __init__(self, streamer: Any, source: int | None = None) -> None:
        self.streamer = streamer
        self.source = source if int(getattr(streamer, "num_sources", 1)) > 1 else None

    def _keep(self, y: Any) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)  # [n] or [S, n]
        return y[self.source] if self.source is not None else y

    def push(self, x: np.ndarray) -> np.ndarray:
        return self._keep(self.streamer.feed(np.ascontiguousarray(x, dtype=np.float32)))

    def flush(self) -> np.ndarray:
        if not self.streamer.received:
            return np.zeros(0, np.float32)
        return self._keep(self.streamer.flush())


class _Resampler:
    """Streaming soxr resampler (identity when the rates match)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.stream = None
        if rate_in != rate_out:
            self.stream = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="VHQ")

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return x
        return self.stream.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)


def _stream(
    blocks: Iterable[np.ndarray],
    rate: int,
    total: int,
    forward: Callable[[np.ndarray], np.ndarray],
    model_rate: int,
    chunk_seconds: float,
    overlap_seconds: float,
    sink: Callable[[np.ndarray], Any],
    where: str,
    clip: bool = False,
    runner: Any = None,
) -> int:
    """Push ``[C, n]`` blocks through the pipeline into ``sink``; exactly ``total`` frames out.

    Returns the number of samples clipped (only when ``clip``).
    """
    chunk, overlap = _chunk_sizes(chunk_seconds, overlap_seconds, model_rate)
    to_model, from_model = _Resampler(rate, model_rate), _Resampler(model_rate, rate)
    if runner is None:
        runner = _OverlapAdd(forward, chunk, overlap, int(MIN_CHUNK_SECONDS * model_rate))
    written = peak = clipped = 0
    read = 0

    def emit(y: np.ndarray) -> None:
        nonlocal written, clipped
        y = y[: total - written]  # resampling round trips may add a sample or two
        if clip:
            over = np.abs(y) > 1.0
            if over.any():
                clipped += int(over.sum())
                y = np.clip(y, -1.0, 1.0)
        if len(y):
            sink(y)
            written += len(y)

    for block in blocks:  # [C, n]
        if not np.all(np.isfinite(block)):
            bad = int(np.argmin(np.all(np.isfinite(block), axis=0)))
            raise AudioError(
                f"{where}: the audio contains NaN or Inf samples (first at {(read + bad) / rate:.2f} s);"
                " repair or re-export it"
            )
        read += block.shape[1]
        peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
        mono = block.mean(axis=0) if block.shape[0] > 1 else block[0]  # [n]
        emit(from_model.push(runner.push(to_model.push(mono))))
    if read == 0:
        raise AudioError(f"{where}: the audio is empty (0 samples)")
    if peak < SILENCE_PEAK:
        raise AudioError(f"{where}: the audio is silent (peak below -120 dBFS); nothing to enhance")
    tail = runner.push(to_model.push(np.zeros(0, np.float32), last=True))
    emit(from_model.push(np.concatenate([tail, runner.flush()])))
    emit(from_model.push(np.zeros(0, np.float32), last=True))
    if written < total:
        emit(np.zeros(total - written, np.float32))
    return clipped


def _chunk_sizes(chunk_seconds: float, overlap_seconds: float, rate: int) -> tuple[int, int]:
    chunk, overlap = int(round(chunk_seconds * rate)), int(round(overlap_seconds * rate))
    if overlap < 0 or chunk <= 0 or overlap >= chunk:
        raise ConfigError(
            f"need 0 <= overlap_seconds < chunk_seconds, got chunk {chunk_seconds} s and overlap"
            f" {overlap_seconds} s"
        )
    return chunk, overlap


def _read_blocks(path: Path) -> Iterator[np.ndarray]:
    """``[C, n]`` blocks of a file; decoding errors become :class:`AudioError`."""
    try:
        yield from iter_audio_blocks(path, BLOCK_FRAMES)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: cannot decode the audio ({err})") from None


def _model_forward(
    model: torch.nn.Module, source: int | None, forward_kwargs: dict[str, Any]
) -> Callable[[np.ndarray], np.ndarray]:
    """A ``[L] -> [L]`` numpy function running ``model`` (no grad), selecting ``source``."""
    check_source(model, source)  # before any audio is read
    param = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    device = param.device if param is not None else torch.device("cpu")

    def forward(chunk: np.ndarray) -> np.ndarray:
        wav = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)[None]  # [1, L]
        return run_enhancement(model, wav, source, **forward_kwargs)[0].float().cpu().numpy()  # [L]

    return forward


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore its previous mode afterwards."""
    if not isinstance(model, torch.nn.Module):  # an onnxruntime engine has no modes
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def audio_suffixes() -> set[str]:
    """File extensions libsndfile reads (``.wav``, ``.flac``, ``.ogg``, ...), lower case."""
    return {f".{name.lower()}" for name in sf.available_formats()}


def expand_inputs(inputs: list[Path], out_dir: Path) -> list[tuple[Path, Path]]:
    """``[(audio file, its output path relative to out_dir)]``.

    A file keeps its name; a folder contributes every audio file below it (sorted, by extension)
    at its path relative to the folder, leaving out anything already inside ``out_dir`` (enhancing
    ``DIR`` into ``DIR/enhanced`` twice does not enhance the first outputs).
    """
    suffixes = audio_suffixes()
    out_resolved = Path(out_dir).resolve()
    pairs: list[tuple[Path, Path]] = []
    for path in inputs:
        if not path.is_dir():
            pairs.append((path, Path(path.name)))
            continue
        files = sorted(
            f for f in path.rglob("*")
            if f.is_file() and f.suffix.lower() in suffixes and not f.resolve().is_relative_to(out_resolved)
        )
        if not files:
            raise AudioError(f"{path}: a folder with no audio files ({', '.join(sorted(suffixes)[:6])}, ...); "
                             "give audio files or a folder that holds some")
        pairs.extend((f, f.relative_to(path)) for f in files)
    return pairs


def _plan_outputs(inputs: list[tuple[Path, Path]], out_dir: Path) -> list[tuple[Path, Path, Any]]:
    """Check every input's header and every output name; ``[(input, output, info)]``."""
    plans = []
    outputs: dict[str, Path] = {}
    for path, relative in inputs:
        info = audio_info(path)  # missing, not audio -> AudioError
        if info.frames == 0:
            raise AudioError(f"{path}: the audio is empty (0 samples)")
        key = relative.with_suffix("").as_posix().casefold()  # case-insensitive file systems collide too
        if key in outputs:
            raise AudioError(
                f"{outputs[key]} and {path} have the same name '{relative.with_suffix('')}', so their outputs"
                " would collide; rename one or enhance them into different folders"
            )
        outputs[key] = path
        suffix = path.suffix if path.suffix.lower() in OUTPUT_SUBTYPES else ".wav"
        plans.append((path, out_dir / relative.with_suffix(suffix), info))
    resolved_inputs = {p.resolve(): p for p, _ in inputs}
    for path, output, _ in plans:
        if output.resolve() in resolved_inputs:
            raise AudioError(
                f"{output}: refusing to overwrite the input file {resolved_inputs[output.resolve()]};"
                " choose another output folder"
            )
    return plans


def _notes(channels: int, rate: int, model_rate: int) -> list[str]:
    notes = []
    if channels > 1:
        notes.append(f"downmixed {channels} channels to mono")
    if rate != model_rate:
        notes.append(f"resampled {rate} -> {model_rate} -> {rate} Hz")
    return notes

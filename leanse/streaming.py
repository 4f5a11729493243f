"""Feed any number of samples, get the enhanced samples available so far (like Demucs-denoiser's
``DemucsStreamer``): ``s = model.streamer(); s.feed(x); s.flush(); s.reset()``.

The :class:`Streamer` runs a model's exportable ``step`` (:mod:`leanse.models.streaming`) hop by
hop, so the same class drives a PyTorch model and an exported ONNX step graph
(:class:`leanse.export.OnnxStepEngine`). Its output is aligned with its input: the first
``latency_samples`` outputs of ``step`` (which lie before the signal) are dropped, and
:meth:`Streamer.flush` ends the stream the way the offline forward ends the signal, so that the
concatenated output of ``feed`` ... ``flush`` is the offline output, sample for sample (to float
rounding; tested).

A separation model (``num_sources = S > 1``, ``stream_info()["num_sources"]``) streams all its
sources at once: its ``step`` returns ``[B, S, hop]`` and ``feed`` / ``flush`` return ``[S, n]``
for one stream (``[batch, S, n]`` for several), the layout of its offline ``[B, S, T]``; the
time axis is always the last one. ``leanse enhance --stream`` keeps the ``--source`` chosen, as
offline ``enhance`` does.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from leanse.errors import AudioError
from leanse.models.streaming import NotStreamableError, State, StateError  # noqa: F401


class StepEngine(Protocol):
    """What a :class:`Streamer` runs: a model, or an ONNX session with the same interface."""

    def init_state(self, batch: int = 1) -> State: ...

    def step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...

    def stream_info(self) -> dict[str, Any]: ...


class Streamer:
    """Stateful wrapper of ``step`` for chunks of any size.

    Args:
        engine: a streamable leanse model (eval mode is set) or an ONNX step engine.
        batch: independent streams (channels are *not* mixed; a stereo file is two streams or
            a downmix, the caller's choice).

    ``feed(x)`` takes ``[T]`` (one stream) or ``[batch, T]`` samples at the model's rate as a
    numpy array or tensor and returns the output samples that are final, of the same type, up to
    ``latency_samples + hop - 1`` fewer than were fed: ``[n]`` / ``[batch, n]``, or for a
    separation model ``[S, n]`` / ``[batch, S, n]``. ``flush()`` returns the rest, so that the
    whole output has the input's length; the streamer then needs ``reset()`` before a new signal.
    """

    def __init__(self, engine: StepEngine, batch: int = 1, sample_rate: int | None = None) -> None:
        if isinstance(engine, torch.nn.Module):
            engine._require_streamable()
            engine.eval()
        self.engine = engine
        self.info = engine.stream_info()
        self.hop = int(self.info["hop"])
        self.latency = int(self.info["latency_samples"])
        self.sample_rate = int(self.info["sample_rate"])
        # sidecars written before separation streamed have no "num_sources": one source
        self.num_sources = int(self.info.get("num_sources", 1))
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise AudioError(f"the model streams at {self.sample_rate} Hz, not {sample_rate} Hz;"
                             " resample the input first")
        self.batch = int(batch)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``feed`` starts a new signal."""
        self.state = self.engine.init_state(self.batch)
        self.pending = torch.zeros(self.batch, 0)  # input not yet stepped (< hop samples)
        self.history = torch.zeros(self.batch, 0)  # the last n_fft samples (reflect flush)
        self.received = 0  # input samples fed
        self.produced = 0  # aligned output samples returned
        self.to_drop = self.latency  # step outputs that lie before the signal
        self.finished = False
        self._kind = (self.batch == 1, False)  # output type of flush: as the last feed's input

    # -- input checks ------------------------------------------------------------------------

    def _as_batch(self, x: Any) -> tuple[torch.Tensor, bool, bool]:
        as_numpy = isinstance(x, np.ndarray)
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) if as_numpy else x
        if not isinstance(tensor, torch.Tensor):
            raise AudioError(f"feed takes a numpy array or a tensor of samples, not {type(x).__name__}")
        squeeze = tensor.dim() == 1
        if squeeze:
            tensor = tensor[None]
        if tensor.dim() != 2 or tensor.shape[0] != self.batch:
            raise AudioError(
                f"this streamer runs {self.batch} stream(s) and takes [T]"
                f"{'' if self.batch == 1 else ''} or [{self.batch}, T] samples, got shape"
                f" {tuple(tensor.shape)}; downmix or split the channels, or build"
                f" streamer(batch={tensor.shape[0] if tensor.dim() == 2 else 1})")
        if squeeze and self.batch != 1:
            raise AudioError(f"this streamer runs {self.batch} streams; feed [{self.batch}, T]")
        if not torch.isfinite(tensor).all():
            raise AudioError("the input contains NaN or Inf samples; repair it before streaming")
        return tensor.float(), squeeze, as_numpy

    @staticmethod
    def _as_output(y: torch.Tensor, squeeze: bool, as_numpy: bool) -> Any:
        y = y[0] if squeeze else y
        return y.numpy() if as_numpy else y

    # -- streaming ---------------------------------------------------------------------------

    def feed(self, x: Any) -> Any:
        """Push samples; return the aligned output samples that are final."""
        if self.finished:
            raise StateError("this stream was flushed; call reset() before feeding a new signal")
        tensor, squeeze, as_numpy = self._as_batch(x)
        self._kind = (squeeze, as_numpy)
        self.received += tensor.shape[1]
        keep = int(self.info.get("n_fft", 0))
        if keep:
            self.history = torch.cat([self.history, tensor], dim=1)[:, -keep:]
        return self._as_output(self._run(tensor), squeeze, as_numpy)

    def _empty_output(self) -> torch.Tensor:
        """No samples, in the output's layout: ``[batch, 0]`` or ``[batch, S, 0]``."""
        sources = () if self.num_sources == 1 else (self.num_sources,)
        return torch.zeros(self.batch, *sources, 0)

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        self.pending = torch.cat([self.pending, tensor], dim=1)
        outputs = []
        with torch.no_grad():
            while self.pending.shape[1] >= self.hop:
                x_hop = self.pending[:, : self.hop]
                self.pending = self.pending[:, self.hop :]
                y_hop, self.state = self.engine.step(x_hop, self.state)
                outputs.append(y_hop)
        return self._align(torch.cat(outputs, dim=-1) if outputs else self._empty_output())

    def _align(self, y: torch.Tensor) -> torch.Tensor:
        drop = min(self.to_drop, y.shape[-1])
        self.to_drop -= drop
        y = y[..., drop:]
        room = self.received - self.produced  # never more output than input
        y = y[..., :room]
        self.produced += y.shape[-1]
        return y

    def flush(self) -> Any:
        """End the signal: return the remaining output (total output length == input length)."""
        if self.finished:
            raise StateError("this stream was already flushed; call reset() first")
        self.finished = True
        mode = self.info["flush"]
        outputs = []
        if mode == "center_reflect":
            outputs.append(self._flush_center_reflect())
        else:  # "zeros": the offline framing pads the end with zeros; feed them until done
            while self.produced < self.received:
                missing = self.received - self.produced + self.to_drop
                zeros = torch.zeros(self.batch, max(self.hop, missing - self.pending.shape[1]))
                outputs.append(self._run(zeros))
        y = torch.cat(outputs, dim=-1) if outputs else self._empty_output()
        return self._as_output(y, *self._kind)

    def _flush_center_reflect(self) -> torch.Tensor:
        """``torch.stft(center=True)``'s end: the signal reflected at its last sample, frames up to
        ``T // hop``, then the overlap-add buffers divided by their envelope (``torch.istft``)."""
        n_fft, total = int(self.info["n_fft"]), self.received
        last_frame = total // self.hop
        padding = last_frame * self.hop + n_fft // 2 - total
        # offline: padded[T + j] = x[T - 2 - j]; history holds the last n_fft samples
        index = torch.arange(padding)
        source = self.history.shape[1] - 2 - index
        reflected = torch.zeros(self.batch, padding)
        usable = source >= 0  # a signal shorter than the reflection: zeros (offline refuses)
        reflected[:, usable] = self.history[:, source[usable]]
        y = self._run(reflected)
        names = [entry["name"] for entry in self.info["state"]]
        signal = self.state[names.index("ola_signal")]
        envelope = self.state[names.index("ola_envelope")]
        floor = float(self.info.get("envelope_floor", 1e-11))
        tail = torch.as_tensor(signal) / torch.as_tensor(envelope).clamp_min(floor)
        return torch.cat([y, self._align(tail.float())], dim=1)


def engine_for_enhance(model_path: Any, engine: str, stream: bool, blocks: int | None
                       ) -> tuple[Any, Any]:
    """``leanse enhance --stream`` / ``--engine onnx``: (model for the checks, streamer factory).

    Refuses, in one line, a non-causal model with ``--stream``, an ONNX file without its sidecar
    or of the wrong graph, and ``--blocks`` (a BLOOM exit is chosen at export/stream time).
    """
    from leanse.errors import ConfigError

    if blocks is not None:
        raise ConfigError("--blocks works with the offline PyTorch engine only; drop --blocks")
    if engine == "onnx":
        from leanse.export import OnnxOfflineModel, read_sidecar, step_engine

        if not stream:
            sidecar = read_sidecar(model_path)
            if sidecar.get("graph") in ("step", "ensemble_step"):
                raise ConfigError(f"{model_path} holds the streaming step graph; add --stream")
            return OnnxOfflineModel(model_path), None
        engine = step_engine(model_path)
        # sidecars written before separation streamed have no "num_sources": one source
        sources = int(engine.stream_info().get("num_sources", 1))
        return _StreamOnly(engine.sample_rate, sources), lambda: Streamer(engine)
    from leanse.checkpoint import load_checkpoint

    model = load_checkpoint(model_path)
    reason = model.not_streamable_reason()
    if reason is not None:
        raise NotStreamableError(f"--stream: {reason}; run without --stream")
    return model, lambda: Streamer(model)


class _StreamOnly:
    """Stands for the model in enhance's checks (sample rate, ``--source``) when only a step
    graph runs."""

    def __init__(self, sample_rate: int, num_sources: int = 1) -> None:
        self.sample_rate = sample_rate
        self.num_sources = num_sources

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never chunked
        raise NotStreamableError("this engine only streams")

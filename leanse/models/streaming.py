"""The streaming interface of leanse models: one hop in, one hop out, state carried explicitly.

Every streamable model offers (the pattern of GTCRN's and DeepFilterNet's streaming exports,
where the state tensors are inputs and outputs of the step graph)::

    state = model.init_state(batch)              # flat tuple of tensors, names: model.state_names
    y_hop, state = model.step(x_hop, state)      # x_hop [B, hop] -> y_hop [B, hop]

A separation model (``num_sources = S > 1``) returns every source, ``y_hop [B, S, hop]``, as its
offline forward returns ``[B, S, T]``; ``stream_info()["num_sources"]`` says which layout.

``step`` writes nothing in place and keeps no Python state, so the same function exports to ONNX
with the state tensors as named inputs and outputs (:mod:`leanse.export`).

Timing, in samples at the model's rate:

* ``hop``: samples consumed and produced per step.
* ``latency_samples``: the output delay of ``step``: ``y_stream[t + latency_samples] ==
  y_offline[t]``. For an STFT model it is ``n_fft - hop`` (the window minus one hop); the usual
  "algorithmic latency" (window + look-ahead) is ``latency_samples + hop`` = ``n_fft``, the extra
  hop being the time to fill one hop of input.
* ``lookahead``: future input (after the frame's own centre/start) the analysis reads: ``n_fft //
  2`` for ``torch.stft(center=True)`` (the frame centred on ``t`` reads up to ``t + n_fft/2``),
  ``n_fft - pad`` for paper 004's framing, ``kernel_size - stride`` for a TasNet encoder.

:class:`leanse.streaming.Streamer` wraps ``step`` for any number of samples (``feed``/``flush``/
``reset``), dropping the first ``latency_samples`` so its output lines up with the input.

This module holds the frame-synchronous STFT front end (:class:`StreamingFraming`) shared by the
mask RNNs and paper 004's models: its analysis buffer and overlap-add buffers (signal and window
envelope, exactly what ``torch.istft`` / :func:`leanse.dsp.overlap_add` divide by) are part of
the state, so the streamed output equals the offline one to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanse.errors import LeanseError

State = tuple[torch.Tensor, ...]


class NotStreamableError(LeanseError):
    """A model (or configuration) that cannot run hop by hop (non-causal, or not implemented)."""


class StateError(LeanseError):
    """A state that does not belong to this model (wrong count, names or shapes)."""


@dataclass(frozen=True)
class StateSpec:
    """Name, shape (batch included) and dtype of one state tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


class StreamingMixin:
    """Default streaming interface: not streamable. Streamable models override the hooks.

    Subclasses implement :meth:`state_specs`, :meth:`_step`, and set ``hop``,
    ``latency_samples``, ``lookahead``, ``flush_mode`` (how :class:`~leanse.streaming.Streamer`
    ends a stream: ``"zeros"`` feeds zeros until every output sample is final -- right for
    framings that pad the end with zeros offline -- and ``"center_reflect"`` reproduces
    ``torch.stft(center=True)``'s reflected end, then reads the pending overlap-add buffers).
    """

    flush_mode: str = "zeros"
    #: False where ``step`` branches in Python on data (a traced graph would freeze one branch)
    step_exports_to_onnx: bool = True

    @property
    def streamable(self) -> bool:
        return self.not_streamable_reason() is None

    def not_streamable_reason(self) -> str | None:
        """``None`` if the model streams, else why not (one line, for the CLI)."""
        return f"{type(self).__name__} has no streaming implementation"

    def _require_streamable(self) -> None:
        reason = self.not_streamable_reason()
        if reason is not None:
            raise NotStreamableError(reason)

    # -- state ----------------------------------------------------------------------------

    def state_specs(self, batch: int = 1) -> list[StateSpec]:
        self._require_streamable()
        raise NotImplementedError

    @property
    def state_names(self) -> list[str]:
        return [spec.name for spec in self.state_specs(1)]

    def init_state(self, batch: int = 1) -> State:
        """Zero state for ``batch`` streams (counters start at 0)."""
        self._require_streamable()
        device = _device_of(self)
        return tuple(torch.zeros(spec.shape, dtype=spec.dtype, device=device)
                     for spec in self.state_specs(batch))

    def check_state(self, state: State, batch: int) -> None:
        """Refuse a state from another model, or one built for another batch size."""
        specs = self.state_specs(batch)
        if not isinstance(state, (tuple, list)) or len(state) != len(specs):
            got = len(state) if isinstance(state, (tuple, list)) else type(state).__name__
            raise StateError(f"this {type(self).__name__} takes a state of {len(specs)} tensors, got"
                             f" {got}; start from model.init_state({batch})")
        for spec, tensor in zip(specs, state):
            if tuple(tensor.shape) != spec.shape:
                raise StateError(
                    f"state tensor {spec.name!r} has shape {tuple(tensor.shape)}, this model needs"
                    f" {spec.shape}: the state comes from another model or batch size; start from"
                    f" model.init_state({batch})")

    # -- stepping ---------------------------------------------------------------------------

    def step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``[B, hop]`` input, state -> ``[B, hop]`` output (``[B, S, hop]`` for a separation model
        with ``num_sources = S > 1``; delayed by ``latency_samples``), state."""
        self._require_streamable()
        if x_hop.dim() != 2 or x_hop.shape[1] != self.hop:
            raise StateError(f"step takes one hop [B, {self.hop}], got {tuple(x_hop.shape)}")
        self.check_state(state, x_hop.shape[0])
        y_hop, new_state = self._step(x_hop, tuple(state))
        return y_hop, tuple(new_state)

    def _step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def streamer(self, batch: int = 1) -> Any:
        """A :class:`leanse.streaming.Streamer` over this model: ``feed`` / ``flush`` / ``reset``."""
        from leanse.streaming import Streamer

        return Streamer(self, batch=batch)

    def stream_info(self) -> dict[str, Any]:
        """What a runner needs besides the step function (also the ONNX sidecar's core)."""
        self._require_streamable()
        info: dict[str, Any] = {
            "hop": int(self.hop),
            "latency_samples": int(self.latency_samples),
            "lookahead": int(self.lookahead),
            "sample_rate": int(self.sample_rate),
            "flush": self.flush_mode,
            "num_sources": int(getattr(self, "num_sources", 1)),  # y_hop [B, hop] or [B, S, hop]
            # shapes for one stream (batch 1), in the order of the step's state arguments
            "state": [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype).split(".")[-1]}
                      for s in self.state_specs(1)],
        }
        framing = getattr(self, "stream_framing", None)
        if framing is not None:
            info["n_fft"] = int(framing.n_fft)
            info["envelope_floor"] = float(framing.envelope_floor)
        return info


def _device_of(module: Any) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------
# Frame-synchronous STFT front end
# ------------------------------------------------------------------------------------------


class OnnxDFT(torch.autograd.Function):
    """``torch.fft`` in eager mode, the ONNX ``DFT`` operator (opset 17) when exported.

    The TorchScript exporter has no ``fft_*``; onnxruntime's DFT runs a radix-2 FFT for powers of
    two (measured on a 1024-point frame: 0.07-0.09 ms for rfft + inverse against 0.13 ms for the
    two dense DFT matrix products, which also cost 8 MB of weights).
    ``x``: ``[B, n, 1]`` real or ``[B, n, 2]`` (real, imaginary) -> ``[B, n or n/2+1, 2]``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, inverse: bool, onesided: bool) -> torch.Tensor:
        signal = torch.complex(x[..., 0], x[..., 1]) if x.shape[-1] == 2 else x[..., 0].to(torch.complex64)
        y = torch.fft.ifft(signal, dim=1) if inverse else torch.fft.fft(signal, dim=1)
        if onesided:
            y = y[:, : x.shape[1] // 2 + 1]
        return torch.stack([y.real, y.imag], dim=-1)

    @staticmethod
    def symbolic(g: Any, x: Any, inverse: bool, onesided: bool) -> Any:
        return g.op("DFT", x, axis_i=1, inverse_i=int(inverse), onesided_i=int(onesided))


def onnx_rfft(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, n]`` real -> ``(re, im)`` ``[B, n/2+1]`` through :class:`OnnxDFT`."""
    spec = OnnxDFT.apply(frame[..., None], False, True)
    return spec[..., 0], spec[..., 1]


def onnx_irfft(re: torch.Tensor, im: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Inverse of :func:`onnx_rfft` (the Hermitian half mirrored, imaginary parts of the DC and
    Nyquist bins ignored as ``irfft`` ignores them) -> ``[B, n]``."""
    mirror = slice(1, n_fft - re.shape[1] + 1)  # bins 1 .. n - F, reversed below
    full_re = torch.cat([re, re[:, mirror].flip(1)], dim=1)  # [B, n]
    full_im = torch.cat([im[:, :1] * 0, im[:, 1:-1], im[:, -1:] * 0, -im[:, mirror].flip(1)], dim=1) \
        if n_fft % 2 == 0 else torch.cat([im[:, :1] * 0, im[:, 1:], -im[:, mirror].flip(1)], dim=1)
    return OnnxDFT.apply(torch.stack([full_re, full_im], dim=-1), True, False)[..., 0]


def real_dft_basis(n_fft: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Analysis matrices ``[n_fft, F]`` with the window folded in: ``frame @ cos``, ``frame @ sin``.

    Used by the exported offline graph (:class:`leanse.export.OfflineGraph`) as convolution
    kernels: the STFT of a whole signal as one strided convolution.
    """
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)[:, None]
    k = torch.arange(bins, dtype=torch.float64)[None]
    angle = 2 * math.pi * n * k / n_fft
    w = window.double()[:, None]
    return (w * torch.cos(angle)).float(), (-w * torch.sin(angle)).float()


def real_idft_basis(n_fft: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesis matrices ``[F, n_fft]``: ``re @ C + im @ S`` = ``irfft(re + j im) * window``.

    The DC and Nyquist bins count once, the others twice (a real signal's Hermitian half);
    their imaginary parts are ignored as ``irfft`` ignores them.
    """
    bins = n_fft // 2 + 1
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None]
    angle = 2 * math.pi * k * n / n_fft
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    w = window.double()[None] / n_fft
    cos = weight * torch.cos(angle) * w
    sin = -weight * torch.sin(angle) * w
    sin[0] = 0.0
    if n_fft % 2 == 0:
        sin[-1] = 0.0
    return cos.float(), sin.float()


class StreamingFraming(nn.Module):
    """Streams a framing + per-frame model + weighted overlap-add, one hop per step.

    Geometry (both offline front ends of leanse): frame ``m`` covers input samples ``[m*hop -
    pad, m*hop - pad + n_fft)``. ``torch.stft(center=True)`` is ``pad = n_fft // 2`` with the
    signal reflected at its start (``reflect=True``); paper 004's :class:`~leanse.dsp.PaddedSTFT`
    is ``pad = 160`` zeros. Step ``k`` (input samples ``[k*hop, (k+1)*hop)``) completes frame
    ``m = k + 1 - D`` with ``D = (n_fft - pad) / hop``; frames with ``m < 0`` do not exist offline
    and are masked out (neither output nor model state changes). After frame ``m``, the output
    samples ``[m*hop - pad, m*hop - pad + hop)`` are final: each step emits the output delayed by
    ``n_fft - hop`` samples.

    State (all ``[B, n_fft - hop]`` except the counter): ``frame_counter`` (``[1]`` int64,
    saturating, tells the first frames apart), ``analysis_buffer`` (the last ``n_fft - hop``
    input samples), ``ola_signal`` and ``ola_envelope`` (windowed overlap-add sums and summed
    squared synthesis windows of the samples not yet emitted; the output is their ratio, as in
    ``torch.istft`` and :func:`leanse.dsp.overlap_add`).

    Args:
        n_fft: frame length.
        hop: frame hop = samples per step; ``(n_fft - pad)`` must be a multiple of it.
        pad: offline padding in front of the signal.
        window: analysis window (also the synthesis window, as both offline front ends use).
        reflect: the front padding is a reflection of the signal (``center=True``), not zeros.
        transform: ``"rfft"`` (frames -> spectra and back) or ``"none"`` (time-domain frames).
        envelope_floor: the smallest envelope divided by (``1e-11`` as ``torch.istft``'s
            check, ``1e-8`` as :func:`leanse.dsp.overlap_add`).
    """

    def __init__(self, n_fft: int, hop: int, pad: int, window: torch.Tensor, reflect: bool,
                 transform: str = "rfft", envelope_floor: float = 1e-11) -> None:
        super().__init__()
        if (n_fft - pad) % hop or pad % hop or pad > n_fft:
            raise NotStreamableError(
                f"frames of {n_fft} samples padded by {pad} do not line up with hop {hop};"
                " streaming needs n_fft - pad and pad to be multiples of the hop")
        self.n_fft, self.hop, self.pad = n_fft, hop, pad
        self.reflect = reflect
        self.transform = transform
        self.envelope_floor = envelope_floor
        self.delay_frames = (n_fft - pad) // hop  # D
        self.register_buffer("window", window.clone().float(), persistent=False)
        # Reflection tables: row r is frame m = r (< pad/hop), whose first samples lie before
        # the signal start; their values come from the mirrored positions (torch.stft's
        # reflect padding). The last row is the identity (steady state).
        early = pad // hop if reflect else 0
        rows = torch.arange(n_fft).repeat(early + 1, 1)  # [early + 1, n_fft]
        mirror = torch.zeros(early + 1, n_fft)
        for m in range(early):
            start = m * hop - pad  # input position of the frame's first sample (< 0)
            for i in range(-start):
                # position p = start + i < 0 takes the value at -p, i.e. frame index -p - start.
                # Index n_fft (x[pad] for m = 0, i = 0) is not in the frame yet; the periodic
                # Hann window is exactly 0 there, so any finite value gives the same frame.
                rows[m, i] = min(-(start + i) - start, n_fft - 1)
                mirror[m, i] = 1.0
        self.register_buffer("reflect_index", rows, persistent=False)
        self.register_buffer("sample_offsets", torch.arange(hop), persistent=False)
        self.register_buffer("reflect_mask", mirror, persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def latency_samples(self) -> int:
        return self.n_fft - self.hop

    def state_specs(self, batch: int) -> list[StateSpec]:
        width = self.n_fft - self.hop
        return [
            StateSpec("frame_counter", (1,), torch.int64),
            StateSpec("analysis_buffer", (batch, width)),
            StateSpec("ola_signal", (batch, width)),
            StateSpec("ola_envelope", (batch, width)),
        ]

    def analyse(self, x_hop: torch.Tensor, state: State) -> tuple[Any, torch.Tensor, State]:
        """``[B, hop]`` -> (frame features, frame index ``m`` ``[1]`` (< 0: no frame yet),
        front-end state after input).

        Features: ``(re, im)`` ``[B, F]`` each for ``rfft``, the frame ``[B, n_fft]`` for
        ``none``.
        """
        counter, buffer, ola_signal, ola_envelope = state
        frame = torch.cat([buffer, x_hop], dim=1)  # [B, n_fft]
        index = counter - (self.delay_frames - 1)  # [1], the frame index m
        valid = index >= 0  # [1] bool
        if self.reflect_mask.shape[0] > 1:
            row = index.clamp(0, self.reflect_mask.shape[0] - 1)  # [1]
            gather = self.reflect_index.index_select(0, row).expand_as(frame)  # [B, n_fft]
            mirror = self.reflect_mask.index_select(0, row)  # [1, n_fft]
            frame = torch.where(mirror > 0, frame.gather(1, gather), frame)
        new_buffer = frame[:, self.hop :]
        max_count = self.delay_frames - 1 + self.reflect_mask.shape[0] - 1
        new_counter = (counter + 1).clamp(max=max(max_count, self.delay_frames))
        if self.transform == "none":
            features: Any = frame * self.window
        elif torch.onnx.is_in_onnx_export():
            features = onnx_rfft(frame * self.window)
        else:
            spec = torch.fft.rfft(frame * self.window, dim=-1)  # [B, F] complex
            features = (spec.real, spec.imag)
        return features, index, (new_counter, new_buffer, ola_signal, ola_envelope)

    def synthesise(self, features: Any, index: torch.Tensor, state: State
                   ) -> tuple[torch.Tensor, State]:
        """Output frame features -> (``[B, hop]`` final samples, front-end state).

        Samples before the signal's start (the first steps' output) are zeros: their envelope
        is near zero and they do not exist offline.
        """
        counter, buffer, ola_signal, ola_envelope = state
        valid = index >= 0
        if self.transform == "none":
            frame = features * self.window  # [B, n_fft]
        elif torch.onnx.is_in_onnx_export():
            re, im = features
            frame = onnx_irfft(re, im, self.n_fft) * self.window
        else:
            re, im = features
            frame = torch.fft.irfft(torch.complex(re, im), n=self.n_fft, dim=-1) * self.window
        weight = valid.to(frame.dtype)  # [1]: frames before frame 0 add nothing
        frame = torch.where(valid, frame, torch.zeros_like(frame))
        zeros = torch.zeros_like(frame[:, : self.hop])
        signal = torch.cat([ola_signal, zeros], dim=1) + frame  # [B, n_fft]
        envelope = torch.cat([ola_envelope, zeros], dim=1) + weight * self.window.square()
        y_hop = signal[:, : self.hop] / envelope[:, : self.hop].clamp_min(self.envelope_floor)
        position = index * self.hop - self.pad + self.sample_offsets  # [hop] input positions
        y_hop = torch.where(position >= 0, y_hop, torch.zeros_like(y_hop))
        return y_hop, (counter, buffer, signal[:, self.hop :], envelope[:, self.hop :])


def masked_update(valid: torch.Tensor, new: State, old: State) -> State:
    """Keep the old model state where the frame is not valid (before frame 0)."""
    return tuple(torch.where(valid, n, o) for n, o in zip(new, old))


class FrameStreamingMixin(StreamingMixin):
    """Streaming for models that run a per-frame network between a framing and overlap-add.

    Subclasses provide ``stream_framing`` (a :class:`StreamingFraming`), ``core_state_specs``
    and ``core_step(features, core_state) -> (features, core_state)``; the mixin does the rest.
    """

    def build_stream_framing(self) -> StreamingFraming:
        raise NotImplementedError

    @property
    def stream_framing(self) -> StreamingFraming:
        # Built on first use and kept outside the module tree (its buffers are functions of the
        # config, not weights), so state_dict, parameter counts and profiles do not change.
        framing = self.__dict__.get("_stream_framing")
        if framing is None:
            framing = self.build_stream_framing().to(_device_of(self))
            self.__dict__["_stream_framing"] = framing
        return framing

    def core_state_specs(self, batch: int) -> list[StateSpec]:
        return []

    def core_step(self, features: Any, core_state: State) -> tuple[Any, State]:
        raise NotImplementedError

    def not_streamable_reason(self) -> str | None:
        return None

    @property
    def hop(self) -> int:
        return self.stream_framing.hop

    @property
    def latency_samples(self) -> int:
        return self.stream_framing.latency_samples

    @property
    def lookahead(self) -> int:
        return self.stream_framing.n_fft - self.stream_framing.pad

    def state_specs(self, batch: int = 1) -> list[StateSpec]:
        self._require_streamable()
        return self.stream_framing.state_specs(batch) + self.core_state_specs(batch)

    def _step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        framing = self.stream_framing
        front, core = state[:4], state[4:]
        features, index, front = framing.analyse(x_hop, front)
        features, new_core = self.core_step(features, core)
        y_hop, front = framing.synthesise(features, index, front)
        return y_hop, front + masked_update(index >= 0, new_core, core)


def rnn_state_specs(prefix: str, rnn: nn.RNNBase, batch: int) -> list[StateSpec]:
    """``h`` (and ``c`` for an LSTM) of a uni-directional batch-first RNN: ``[L, B, H]`` each."""
    shape = (rnn.num_layers, batch, rnn.hidden_size)
    specs = [StateSpec(f"{prefix}_h", shape)]
    if isinstance(rnn, nn.LSTM):
        specs.append(StateSpec(f"{prefix}_c", shape))
    return specs


def rnn_step(rnn: nn.RNNBase, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One time step ``[B, I]`` of a uni-directional batch-first RNN with explicit state -> ``[B, H]``.

    Exported, it is the module itself (ONNX ``LSTM`` / ``GRU`` with initial states). In eager mode
    it runs ``torch.lstm_cell`` / ``torch.gru_cell`` layer by layer: the same equations and
    weights, but plain matrix-vector products -- the fused ``torch.lstm`` on one time step costs
    milliseconds of set-up (measured 20 ms a step for ``lstm-mask-512x2`` against ~1 ms here).
    """
    is_lstm = isinstance(rnn, nn.LSTM)
    if torch.onnx.is_in_onnx_export():
        if is_lstm:
            out, (h, c) = rnn(x[:, None], (state[0], state[1]))
            return out[:, 0], (h, c)
        out, h = rnn(x[:, None], state[0])
        return out[:, 0], (h,)
    hs, cs = [], []
    for layer in range(rnn.num_layers):
        weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if is_lstm:
            h, c = torch.lstm_cell(x, (state[0][layer], state[1][layer]), *weights)
            cs.append(c)
        else:
            h = torch.gru_cell(x, state[0][layer], *weights)
        hs.append(h)
        x = h
    if is_lstm:
        return x, (torch.stack(hs), torch.stack(cs))
    return x, (torch.stack(hs),)

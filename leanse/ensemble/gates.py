"""Gating networks: utterance classifiers that pick the specialist of a sparse ensemble.

A gate reads the magnitude STFT of a *whole* noisy utterance and returns one vector of ``K`` logits
``o`` per utterance (paper 000 Sec. 2.2: "after processing the entire input sequence, the network
produces a single softmax vector p"). The softmax is left to the user: the ensemble applies its own
sharpened softmax (000 eq. 5), a classification loss applies ``log_softmax``, and
:meth:`Gate.probabilities` gives ``softmax(scale * o)`` for reports.

Gates are not enhancement models (they output labels, not waveforms), so they have a small registry
of their own that mirrors :mod:`leanse.models.base`: :func:`register_gate`, :func:`register_gate_preset`
and :func:`build_gate` rebuild a gate from its JSON-serialisable :attr:`Gate.config`. The registry
also holds the gate *parts* that have a preset (the speaker embedding ``f`` of paper 001).

Choices the papers leave open: the RNN reads the linear magnitude, as the specialists do; the logits
come from the top layer's output at the last frame (for a unidirectional RNN this is its final
hidden state).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from leanse.dsp import STFT
from leanse.errors import ConfigError
from leanse.registry import add_preset, build_registered, registering

RNN_TYPES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}

#: name -> class, for gates and gate parts (``build_gate({"name": ..., ...})``).
GATE_REGISTRY: dict[str, type["UtteranceNet"]] = {}
#: Named gate architectures (``build_gate("snr-gate-128x2")``).
GATE_PRESETS: dict[str, dict[str, Any]] = {}


class UtteranceNet(nn.Module):
    """Base of gates and gate parts: one waveform utterance in, one vector out, rebuildable.

    Subclasses keep their constructor arguments JSON serialisable and stored under the same names;
    :attr:`config` is derived from the constructor's signature (as for enhancement models).
    They all own an STFT front end with ``n_fft``, ``hop_length`` and ``sample_rate`` attributes,
    which a sparse ensemble compares with its specialists'.
    """

    registered_name: str = ""

    def __init__(self, n_fft: int, hop_length: int, sample_rate: int, own_stft: bool = True) -> None:
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.sample_rate = int(sample_rate)
        if own_stft:  # composite nets (SpeakerGate) leave the STFT to their part
            self.stft = STFT(self.n_fft, self.hop_length)

    @property
    def config(self) -> dict[str, Any]:
        """``{"name": registered name, **constructor arguments}``."""
        params = inspect.signature(type(self).__init__).parameters
        config: dict[str, Any] = {"name": type(self).registered_name}
        for key in params:
            if key != "self":
                config[key] = getattr(self, key)
        return config

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` waveform -> ``[B, N, F]`` magnitude frames (the RNN input)."""
        if wav.dim() != 2:
            raise ConfigError(
                f"{type(self).__name__} expects a waveform batch [B, T], got shape {tuple(wav.shape)}"
            )
        return self.stft(wav).abs().transpose(1, 2)


def last_frame_rnn(rnn_type: str, input_size: int, hidden_size: int, num_layers: int) -> nn.RNNBase:
    """The unidirectional, batch-first LSTM/GRU shared by gates and the speaker embedding."""
    if rnn_type not in RNN_TYPES:
        raise ConfigError(f"rnn_type must be one of {sorted(RNN_TYPES)}, not {rnn_type!r}")
    if hidden_size < 1 or num_layers < 1:
        raise ConfigError(
            f"hidden_size and num_layers must be positive, got {hidden_size} and {num_layers}"
        )
    return RNN_TYPES[rnn_type](input_size, hidden_size, num_layers=num_layers, batch_first=True)


class Gate(UtteranceNet):
    """Interface of every gate: ``forward(wav [B, T]) -> logits o [B, K]``.

    Subclasses set :attr:`num_classes` (``K``, the number of specialists it chooses between).
    """

    num_classes: int

    def probabilities(self, wav: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``p_k = exp(scale * o_k) / sum_j exp(scale * o_j)`` (000 eq. 5; ``scale`` is lambda)."""
        return torch.softmax(scale * self(wav), dim=-1)

    def predict(self, wav: torch.Tensor) -> torch.Tensor:
        """``k* = argmax_k p_k`` per utterance (000 eq. 3): ``[B, T]`` -> ``[B]`` long."""
        return self(wav).argmax(dim=-1)


def gate_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gate objective of 000 Sec. 3: BCE between ``p = softmax(o)`` and one-hot ``labels``.

    ``logits [B, K]``, ``labels [B]`` (long) -> scalar, averaged over all ``B * K`` elements (the
    paper does not say how it reduces; a plain mean is PyTorch's default). Unlike categorical cross
    entropy, the ``log(1 - p_k)`` terms also push the wrong classes down.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ConfigError(
            f"gate_bce_loss expects logits [B, K] and labels [B], got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    target = nn.functional.one_hot(labels.long(), logits.shape[-1]).to(logits.dtype)
    # BCE on probabilities, computed from log-probabilities for numerical stability.
    log_p = torch.log_softmax(logits, dim=-1)
    log_not_p = torch.log1p(-log_p.exp().clamp(max=1 - 1e-7))
    return -(target * log_p + (1 - target) * log_not_p).mean()


def register_gate(name: str) -> Callable[[type[UtteranceNet]], type[UtteranceNet]]:
    """Class decorator: make ``build_gate({"name": name, ...})`` construct this class."""

    return registering(GATE_REGISTRY, name, "gate")


def register_gate_preset(name: str, config: dict[str, Any]) -> None:
    """Add a named gate architecture."""
    add_preset(GATE_PRESETS, name, config, "gate")


def build_gate(config: dict[str, Any] | str) -> UtteranceNet:
    """Construct a gate (or gate part) from a config dict or a preset name.

    Accepts ``"snr-gate-128x2"``, ``{"preset": NAME, **overrides}`` or ``{"name": GATE, **args}``;
    unknown names and arguments raise :class:`ConfigError` naming the offending key.
    """
    return build_registered(config, GATE_REGISTRY, GATE_PRESETS, "gate")


@register_gate("rnn_gate")
class RNNGate(Gate):
    """The gating network of paper 000 Sec. 2.2: RNN over |X| -> last frame -> Linear(H, K).

    ``snr-gate-128x2`` (LSTM 128 x 2, K=4 SNR bins, 16 kHz, 513 bins) has 461,828 parameters and
    ``gender-gate-16x2`` (LSTM 16 x 2, K=2) has 36,194. 000 Sec. 3 trains it with binary cross
    entropy between the softmax vector and the one-hot index of the best-suited specialist: that
    is :func:`gate_bce_loss`.

    Args:
        rnn_type: ``"lstm"`` (000) or ``"gru"``.
        hidden_size: units per layer.
        num_layers: stacked RNN layers.
        num_classes: ``K``, the number of specialists.
        n_fft, hop_length, sample_rate: must equal the specialists' (the ensemble checks).
    """

    def __init__(
        self,
        rnn_type: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 2,
        num_classes: int = 4,
        n_fft: int = 1024,
        hop_length: int = 256,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(n_fft, hop_length, sample_rate)
        if num_classes < 2:
            raise ConfigError(f"a gate chooses between at least 2 specialists, got num_classes={num_classes}")
        self.rnn_type = rnn_type
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_classes = num_classes
        self.rnn = last_frame_rnn(rnn_type, self.stft.num_bins, hidden_size, num_layers)
        self.dense = nn.Linear(hidden_size, num_classes)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` noisy waveform -> ``[B, K]`` logits ``o`` (no softmax)."""
        hidden, _ = self.rnn(self.magnitude(wav))  # [B, N, H]
        return self.dense(hidden[:, -1])  # last frame: [B, H] -> [B, K]


def _gate_presets() -> None:
    # 000 Sec. 4: the 128x2 SNR gate (K=4: -5, 0, 5, 10 dB) and the 16x2 gender gate (K=2).
    register_gate_preset(
        "snr-gate-128x2",
        dict(name="rnn_gate", rnn_type="lstm", hidden_size=128, num_layers=2, num_classes=4,
             n_fft=1024, hop_length=256, sample_rate=16000),
    )
    register_gate_preset(
        "gender-gate-16x2",
        dict(name="rnn_gate", rnn_type="lstm", hidden_size=16, num_layers=2, num_classes=2,
             n_fft=1024, hop_length=256, sample_rate=16000),
    )
    # Matches the STFT of the `tiny-mask-rnn` model preset (tiny recipes, tests).
    register_gate_preset(
        "tiny-snr-gate",
        dict(name="rnn_gate", rnn_type="lstm", hidden_size=16, num_layers=1, num_classes=4,
             n_fft=512, hop_length=128, sample_rate=16000),
    )


_gate_presets()

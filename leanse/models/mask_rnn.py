"""The mask RNN of papers 000 (Sec. 2.1) and 001 (Sec. 3.2).

A unidirectional LSTM or GRU reads the magnitude STFT frame by frame; a dense layer with a sigmoid
estimates a ratio mask in [0, 1] for each bin, which multiplies the noisy STFT; the noisy phase is
kept (``S_hat = Y * X``, 000 Sec. 2.1). With ``n_fft`` 1024 and hop 256 there are 513 bins, which is
what makes ``lstm-mask-1024x2`` 15,226,369 and ``gru-mask-256x2-8k`` 1,118,721 parameters.

Choices the papers leave open: the RNN reads the linear magnitude (no log compression, no
normalisation), as the papers describe masking |X| directly. ``features="log_power"`` feeds
``log10(|X|^2 + 1e-8) / 10`` instead, as NSNet2 does (Braun et al. 2021): a level change of the
input is then a shift of the features rather than a scale, which is what lets a model trained on
a few corpora hold up on real recordings at other levels (the real-speech ``leanse-*`` models).
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.dsp import STFT
from leanse.errors import ConfigError
from leanse.models.base import EnhancementModel, register_model, register_preset
from leanse.models.streaming import (
    FrameStreamingMixin,
    State,
    StateSpec,
    StreamingFraming,
    rnn_state_specs,
    rnn_step,
)

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU}
FEATURES = ("magnitude", "log_power")


@register_model("mask_rnn")
class MaskRNN(FrameStreamingMixin, EnhancementModel):
    """Unidirectional RNN -> Linear -> sigmoid magnitude mask, noisy phase.

    Args:
        rnn_type: ``"lstm"`` (000) or ``"gru"`` (001).
        hidden_size: units per layer (``H`` in "H x L").
        num_layers: stacked RNN layers (``L``).
        n_fft: STFT size; ``n_fft // 2 + 1`` bins are the RNN input and mask size.
        hop_length: STFT hop.
        sample_rate: 16000 in 000, 8000 in 001.
        features: ``"magnitude"`` (the papers) or ``"log_power"`` (NSNet2-style input).
        attenuation_limit_db: if set, no bin is attenuated by more than this (the mask is
            ``g + (1 - g) * sigmoid(.)`` with ``g = 10^(-limit/20)``), as DeepFilterNet's
            ``--atten-lim``: a little residual noise kept under the speech preserves the weak speech
            cues that intelligibility (STOI/ESTOI) hears. A run-time setting; it adds no weights.

    Streaming: one STFT hop per step with the ``center=True`` STFT reproduced exactly (reflected
    start, :class:`~leanse.models.streaming.StreamingFraming`); state = front end + the RNN's
    ``h`` (and ``c``). Latency ``n_fft - hop`` samples (768 = 96 ms for ``gru-mask-256x2-8k``),
    look-ahead ``n_fft / 2`` (the centred frame).
    """

    flush_mode = "center_reflect"

    def __init__(
        self,
        rnn_type: str = "lstm",
        hidden_size: int = 512,
        num_layers: int = 2,
        n_fft: int = 1024,
        hop_length: int = 256,
        sample_rate: int = 16000,
        features: str = "magnitude",
        attenuation_limit_db: float | None = None,
    ) -> None:
        super().__init__(sample_rate)
        if rnn_type not in RNN_TYPES:
            raise ConfigError(f"rnn_type must be one of {sorted(RNN_TYPES)}, not {rnn_type!r}")
        if features not in FEATURES:
            raise ConfigError(f"features must be one of {list(FEATURES)}, not {features!r}")
        if attenuation_limit_db is not None and not attenuation_limit_db > 0:
            raise ConfigError(f"attenuation_limit_db must be a positive number of dB (or null), not {attenuation_limit_db!r}")
        self.features = features
        self.attenuation_limit_db = attenuation_limit_db
        self.rnn_type = rnn_type
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.stft = STFT(n_fft, hop_length)
        self.rnn = RNN_TYPES[rnn_type](
            self.stft.num_bins, hidden_size, num_layers=num_layers, batch_first=True
        )
        self.dense = nn.Linear(hidden_size, self.stft.num_bins)

    def rnn_input(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Magnitudes (any shape) -> the RNN's input features."""
        if self.features == "log_power":
            return torch.log10(magnitude.pow(2) + 1e-8) / 10
        return magnitude

    def estimate_mask(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``[B, N, F]`` magnitude frames -> ``[B, N, F]`` mask in [0, 1]."""
        hidden, _ = self.rnn(self.rnn_input(magnitude))  # [B, N, H]
        return self.gain(self.dense(hidden))

    def gain(self, logits: torch.Tensor) -> torch.Tensor:
        """Mask logits -> gains in [0, 1], floored at ``-attenuation_limit_db`` when it is set."""
        mask = torch.sigmoid(logits)
        if self.attenuation_limit_db is None:
            return mask
        floor = 10.0 ** (-self.attenuation_limit_db / 20.0)
        return floor + (1.0 - floor) * mask

    # -- streaming ---------------------------------------------------------------------------

    def build_stream_framing(self) -> StreamingFraming:
        return StreamingFraming(self.n_fft, self.hop_length, self.n_fft // 2, self.stft.window,
                                reflect=True)

    def core_state_specs(self, batch: int) -> list[StateSpec]:
        return rnn_state_specs("rnn", self.rnn, batch)

    def core_sequence(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All frames at once: ``(re, im)`` ``[B, N, F]`` -> masked ``(re, im)`` (ONNX offline)."""
        mask = self.estimate_mask(torch.sqrt(re * re + im * im))  # [B, N, F]
        return re * mask, im * mask

    def core_step(self, features: tuple[torch.Tensor, torch.Tensor], state: State
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], State]:
        """One frame: ``(re, im)`` ``[B, F]`` -> masked ``(re, im)``."""
        re, im = features
        magnitude = torch.sqrt(re * re + im * im)  # [B, F]
        hidden, state = rnn_step(self.rnn, self.rnn_input(magnitude), state)  # [B, H]
        mask = self.gain(self.dense(hidden))  # [B, F]
        return (re * mask, im * mask), state

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` noisy waveform -> ``[B, T]`` estimate."""
        spec = self.stft(wav)  # [B, F, N] complex
        mask = self.estimate_mask(spec.abs().transpose(1, 2))  # [B, N, F]
        return self.stft.inverse(spec * mask.transpose(1, 2), length=wav.shape[-1])


def _mask_rnn_presets() -> None:
    # 000: LSTM specialists and generalists at 16 kHz (sizes of its Figure 2).
    for hidden, layers in [(64, 2), (128, 2), (256, 2), (512, 2), (1024, 2), (1024, 3)]:
        register_preset(
            f"lstm-mask-{hidden}x{layers}",
            dict(name="mask_rnn", rnn_type="lstm", hidden_size=hidden, num_layers=layers,
                 sample_rate=16000),
        )
    # 001: GRU specialists and generalists at 8 kHz (its Figure 3 sweeps 32..1024 x 2).
    for hidden in [32, 64, 128, 256, 512, 1024]:
        register_preset(
            f"gru-mask-{hidden}x2-8k",
            dict(name="mask_rnn", rnn_type="gru", hidden_size=hidden, num_layers=2,
                 sample_rate=8000),
        )
    # Small enough to train in minutes on two CPU cores (tiny recipes, tests).
    register_preset(
        "tiny-mask-rnn",
        dict(name="mask_rnn", rnn_type="lstm", hidden_size=64, num_layers=2, n_fft=512,
             hop_length=128, sample_rate=16000),
    )


_mask_rnn_presets()

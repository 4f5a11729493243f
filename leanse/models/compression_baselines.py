"""The four speech enhancement models that paper 004 compresses (004 Sec. III-B, Table IV).

All run at 16 kHz on 004's framing (Sec. III-A): 20 ms frames, 10 ms hop, a 320-point DFT ->
161 bins; 160 zeros of padding on each side give 401 frames for 4 s, the count behind the
published MACs (:class:`leanse.dsp.PaddedSTFT`, Hamming window as Sec. III-A says). Waveform in,
waveform out; every model keeps the input length. 004 says all four are causal (Sec. III-B): the
networks look at no future frame, so the only look-ahead is the framing itself (an output sample
depends on input at most one frame, 320 samples = 20 ms, later).

* ``fdnn`` (004 Sec. III-B1): three hidden layers of 2048 units, ideal ratio mask with a sigmoid.
  Its input is **one frame** of 161 magnitudes: 9,054,369 parameters only come out with a
  161-dimensional input (``(I+1) * 2048 = 331,776`` leaves ``I = 161``), i.e. no context frames.
  Open choices: ReLU hidden activations (004 names none; ReLU as for the LSTM's output, [9]); the
  mask multiplies the noisy STFT and the noisy phase is kept; linear magnitudes, no normalisation.
* ``lstm_map`` (Sec. III-B2): LSTM 4 x 1024 -> Linear(1024, 161) -> ReLU, spectral magnitude
  mapping, resynthesised with the noisy phase. PyTorch's two bias vectors per gate (30,217,377).
* ``tcnn`` (Sec. III-B3; Pandey & Wang, "TCNN: temporal convolutional neural network for
  real-time speech enhancement in the time domain", ICASSP 2019): time domain, 320-sample frames
  (hop 160) stacked as a ``[1, N, 320]`` image; 7 causal Conv2d (2, 5) encoder layers (channels
  1-16-16-16-32-32-64-64, frequency strides 1, 2, ..., 2: 320 -> 320 -> 160 -> 80 -> 40 -> 20
  -> 10 -> 4), each BatchNorm + PReLU; the ``64 x 4`` output is a 256-channel sequence for the
  temporal convolution module of 3 stacks x 6 residual blocks (``1x1 256->512 -> PReLU -> BN ->
  causal depthwise k=3, dilation 1..32 -> PReLU -> BN -> 1x1 512->256``, residual add, every
  convolution with its bias); 7 mirrored ConvTranspose2d (2, 5) decoder layers fed with the skip
  concatenation of the matching encoder output, each BatchNorm + PReLU; overlap-add.
  Open choices fixed by the count 5,053,685: all convolutions have biases, every PReLU has one
  shared slope, and the last decoder layer (to 1 channel) keeps its BatchNorm + PReLU. Left open
  and not affecting any count: frequency padding 2 (the last encoder layer 1, to land on 4 bins),
  the transposed convolutions' causal cropping (their extra last frame is dropped), overlap-add
  divided by the frame overlap (rectangular frames).
  **MACs**: thop counts 4.91G on 4 s (401 frames) against the printed 4.80G (+2.3 %); the
  parameters are exact. What reproduces 4.80G (measured, ``tests/test_compression_models.py``):
  TCNN's own framing -- 320-sample frames, hop 160, *no* padding, i.e. 399 frames for 4 s
  (preset ``tcnn-399``; 004 used Pandey's implementation, its acknowledgement says) -- and
  counting the multiply-accumulates of the convolution weights only (thop's conv formulas, which
  leave out biases and count a transposed convolution as ``output positions x C_in x k``), with
  BatchNorm folded into the convolutions at inference and PReLU not a MAC
  (:func:`leanse.compress.cost.weight_macs`): 12,041,508 MACs a frame x 399 = 4.8046G. With
  BatchNorm and PReLU counted as thop does, 399 frames give 4.89G; 401 frames without them 4.83G.
  No choice of frequency paddings reaches 4.80G at 401 frames (the smallest, padding 1 in layers
  2-7, counts 4.83G with thop).
* ``gcrn`` (Sec. III-B4; Tan & Wang, "Learning complex spectral mapping with gated convolutional
  recurrent networks for monaural speech enhancement", IEEE/ACM TASLP 2020), GCRN-complex: real
  and imaginary STFT as 2 channels; 5 gated Conv2d (1, 3) stride (1, 2) encoder blocks
  (``conv * sigmoid(gate conv)``, BatchNorm, ELU; 16-32-64-128-256 channels, 161 -> 80 -> 39 ->
  19 -> 9 -> 4 bins); grouped LSTM over the 1024 features: 2 groups x LSTM(512, 512), an
  interleaving rearrangement, LayerNorm(1024), a second grouped layer, LayerNorm(1024); two
  decoders (real, imaginary) of 5 gated ConvTranspose2d blocks with skip concatenation,
  BatchNorm and ELU (the last block's too, to 1 channel), each ending in Linear(161, 161).
  9,771,340 parameters (the two LayerNorms are 4,096 of them). thop counts 9.59G MACs against
  the printed 9.61G (0.2 %; FIDELITY accepts 0.3 %).

Small variants (004 Sec. IV-C, Table IV): ``fdnn-small`` 3 x 200 (145,161; Table IV's "1.45M" is
a slip, FIDELITY), ``lstm-4x320`` (3.14M), ``tcnn-small`` (512 -> 256 middle channels, 2 stacks
of dilation blocks: 1.85M), ``gcrn-small`` (encoder blocks 4, 5 with 64 and 128 channels, first
decoder block of each decoder with 64: 2.61M).
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.dsp import PaddedFraming, PaddedSTFT
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

# 004 Sec. III-A framing, shared by all four models.
N_FFT = 320
HOP = 160
PAD = 160


def _stft() -> PaddedSTFT:
    return PaddedSTFT(N_FFT, HOP, PAD, window="hamming")


class _PaddedSTFTStreaming(FrameStreamingMixin):
    """Streaming for the T-F models on 004's framing: one 10 ms hop per step, the network on
    each 20 ms frame as it completes; latency 160 samples (10 ms) + the 10 ms hop = one frame.
    The end is zero padded offline, so a stream ends by feeding zeros."""

    flush_mode = "zeros"

    def build_stream_framing(self) -> StreamingFraming:
        return StreamingFraming(N_FFT, HOP, PAD, self.stft.window, reflect=False,
                                envelope_floor=1e-8)


# --------------------------------------------------------------------------------------------
# FDNN and LSTM (T-F magnitude domain)
# --------------------------------------------------------------------------------------------


@register_model("fdnn")
class FDNN(_PaddedSTFTStreaming, EnhancementModel):
    """Feedforward DNN estimating the ideal ratio mask frame by frame (004 Sec. III-B1).

    Args:
        hidden_size: units per hidden layer (2048; 200 in FDNN_S).
        num_layers: hidden layers (3).
        sample_rate: 16000.
    """

    def __init__(self, hidden_size: int = 2048, num_layers: int = 3,
                 sample_rate: int = 16000) -> None:
        super().__init__(sample_rate)
        if num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, not {num_layers}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.stft = _stft()
        bins = self.stft.num_bins
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(bins if i == 0 else hidden_size, hidden_size), nn.ReLU()]
        layers += [nn.Linear(hidden_size, bins), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav)  # [B, F, N]
        mask = self.net(spec.abs().transpose(1, 2))  # [B, N, F], one frame in, one mask out
        return self.stft.inverse(spec * mask.transpose(1, 2), length=wav.shape[-1])

    def core_sequence(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.net(torch.sqrt(re * re + im * im))  # [B, N, F]
        return re * mask, im * mask

    def core_step(self, features: tuple[torch.Tensor, torch.Tensor], state: State
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], State]:
        re, im = features  # [B, F] each
        mask = self.net(torch.sqrt(re * re + im * im))
        return (re * mask, im * mask), state


@register_model("lstm_map")
class LSTMMapping(_PaddedSTFTStreaming, EnhancementModel):
    """Unidirectional LSTM -> Linear -> ReLU spectral magnitude mapping (004 Sec. III-B2).

    The estimated clean magnitude is resynthesised with the noisy phase.

    Args:
        hidden_size: units per LSTM layer (1024; 320 in LSTM_S).
        num_layers: LSTM layers (4).
        sample_rate: 16000.
    """

    def __init__(self, hidden_size: int = 1024, num_layers: int = 4,
                 sample_rate: int = 16000) -> None:
        super().__init__(sample_rate)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.stft = _stft()
        bins = self.stft.num_bins
        self.rnn = nn.LSTM(bins, hidden_size, num_layers=num_layers, batch_first=True)
        self.dense = nn.Linear(hidden_size, bins)
        self.relu = nn.ReLU()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav)
        hidden, _ = self.rnn(spec.abs().transpose(1, 2))
        magnitude = self.relu(self.dense(hidden)).transpose(1, 2)  # [B, F, N]
        phase = torch.polar(torch.ones_like(magnitude), spec.angle())
        return self.stft.inverse(magnitude * phase, length=wav.shape[-1])

    def core_sequence(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, _ = self.rnn(torch.sqrt(re * re + im * im))  # [B, N, H]
        magnitude = self.relu(self.dense(hidden))  # [B, N, F]
        angle = torch.atan2(im, re)
        return magnitude * torch.cos(angle), magnitude * torch.sin(angle)

    def core_state_specs(self, batch: int) -> list[StateSpec]:
        return rnn_state_specs("rnn", self.rnn, batch)

    def core_step(self, features: tuple[torch.Tensor, torch.Tensor], state: State
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], State]:
        re, im = features  # [B, F] each
        hidden, state = rnn_step(self.rnn, torch.sqrt(re * re + im * im), state)
        magnitude = self.relu(self.dense(hidden))  # [B, F]
        angle = torch.atan2(im, re)  # the noisy phase, as spec.angle()
        return (magnitude * torch.cos(angle), magnitude * torch.sin(angle)), state


# --------------------------------------------------------------------------------------------
# TCNN (time domain)
# --------------------------------------------------------------------------------------------


class _TCMBlock(nn.Module):
    """Residual block of TCNN's temporal convolution module (Pandey & Wang 2019, Fig. 1)."""

    def __init__(self, channels: int, hidden: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.inp = nn.Conv1d(channels, hidden, 1)
        self.act1 = nn.PReLU()
        self.norm1 = nn.BatchNorm1d(hidden)
        self.depthwise = nn.Conv1d(hidden, hidden, 3, dilation=dilation, groups=hidden)
        self.act2 = nn.PReLU()
        self.norm2 = nn.BatchNorm1d(hidden)
        self.out = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(self.act1(self.inp(x)))
        y = nn.functional.pad(y, (2 * self.dilation, 0))  # causal: past and present only
        y = self.norm2(self.act2(self.depthwise(y)))
        return x + self.out(y)


@register_model("tcnn")
class TCNN(_PaddedSTFTStreaming, EnhancementModel):
    """Temporal convolutional neural network, time domain (004 Sec. III-B3; Pandey & Wang 2019).

    Args:
        encoder_channels: output channels of the 7 encoder layers (the decoder mirrors them).
        tcm_hidden: middle channels of each residual block (512; 256 in TCNN_S).
        num_stacks: stacks of dilation blocks (3; 2 in TCNN_S).
        blocks_per_stack: residual blocks per stack, dilations 1, 2, 4, ... (6: up to 32).
        sample_rate: 16000.
        framing_pad: zero samples framed on each side: 160 = 004's framing (401 frames for
            4 s), 0 = TCNN's own (Pandey & Wang 2019: 399 frames), which reproduces 004's MACs.
    """

    FRAME = 320
    #: frequency stride and padding of the 7 encoder layers (320 samples -> 4 "bins")
    STRIDES = (1, 2, 2, 2, 2, 2, 2)
    PADDING = (2, 2, 2, 2, 2, 2, 1)

    def __init__(self, encoder_channels: list[int] | None = None, tcm_hidden: int = 512,
                 num_stacks: int = 3, blocks_per_stack: int = 6,
                 sample_rate: int = 16000, framing_pad: int = PAD) -> None:
        super().__init__(sample_rate)
        encoder_channels = list(encoder_channels or [16, 16, 16, 32, 32, 64, 64])
        if len(encoder_channels) != 7:
            raise ConfigError(f"encoder_channels needs 7 entries, not {len(encoder_channels)}")
        self.encoder_channels = encoder_channels
        self.tcm_hidden = tcm_hidden
        self.num_stacks = num_stacks
        self.blocks_per_stack = blocks_per_stack
        self.framing_pad = framing_pad
        self.framing = PaddedFraming(self.FRAME, HOP, framing_pad)

        widths = [self.FRAME]
        for stride, pad in zip(self.STRIDES, self.PADDING):
            widths.append((widths[-1] + 2 * pad - 5) // stride + 1)
        self.widths = widths  # 320, 320, 160, 80, 40, 20, 10, 4

        ins = [1] + encoder_channels[:-1]
        self.encoder = nn.ModuleList(
            nn.Conv2d(cin, cout, (2, 5), stride=(1, s), padding=(0, p))
            for cin, cout, s, p in zip(ins, encoder_channels, self.STRIDES, self.PADDING)
        )
        self.encoder_norms = nn.ModuleList(nn.BatchNorm2d(c) for c in encoder_channels)
        self.encoder_acts = nn.ModuleList(nn.PReLU() for _ in encoder_channels)

        channels = encoder_channels[-1] * widths[-1]  # 64 x 4 = 256
        self.tcm = nn.Sequential(*(
            _TCMBlock(channels, tcm_hidden, 2**b)
            for _ in range(num_stacks) for b in range(blocks_per_stack)
        ))

        # Decoder layer k undoes encoder layer 7 - k; its input is the previous decoder output
        # concatenated with encoder layer (7 - k)'s output.
        self.decoder = nn.ModuleList()
        self.decoder_norms = nn.ModuleList()
        self.decoder_acts = nn.ModuleList()
        prev = encoder_channels[-1]
        for k in reversed(range(7)):
            cout = ins[k]
            stride, pad = self.STRIDES[k], self.PADDING[k]
            extra = widths[k] - ((widths[k + 1] - 1) * stride - 2 * pad + 5)
            self.decoder.append(nn.ConvTranspose2d(
                prev + encoder_channels[k], cout, (2, 5), stride=(1, stride), padding=(0, pad),
                output_padding=(0, extra)))
            self.decoder_norms.append(nn.BatchNorm2d(cout))
            self.decoder_acts.append(nn.PReLU())
            prev = cout

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        frames = self.framing(wav)  # [B, N, 320]
        return self.framing.inverse(self.core_sequence(frames), length=wav.shape[-1])

    def core_sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, N, 320]`` frames -> ``[B, N, 320]`` enhanced frames (before overlap-add)."""
        num_frames = frames.shape[1]
        x = frames.unsqueeze(1)  # [B, 1, N, 320]
        skips = []
        for conv, norm, act in zip(self.encoder, self.encoder_norms, self.encoder_acts):
            x = act(norm(conv(nn.functional.pad(x, (0, 0, 1, 0)))))  # causal: previous frame
            skips.append(x)
        batch, channels, _, width = x.shape
        y = x.permute(0, 1, 3, 2).reshape(batch, channels * width, num_frames)
        y = self.tcm(y)
        x = y.reshape(batch, channels, width, num_frames).permute(0, 1, 3, 2)
        for conv, norm, act, skip in zip(self.decoder, self.decoder_norms, self.decoder_acts,
                                         reversed(skips)):
            x = conv(torch.cat([x, skip], dim=1))[:, :, :num_frames]  # drop the look-ahead frame
            x = act(norm(x))
        return x.squeeze(1)

    # -- streaming: one 320-sample frame per 160-sample hop ---------------------------------

    def not_streamable_reason(self) -> str | None:
        if self.framing_pad != PAD:  # the unpadded end is not reproduced step by step (measured)
            return (f"streaming TCNN needs 004's framing (framing_pad={PAD}); framing_pad="
                    f"{self.framing_pad} (tcnn-399) is for counting 004's MACs")
        return super().not_streamable_reason()

    def build_stream_framing(self) -> StreamingFraming:
        return StreamingFraming(self.FRAME, HOP, PAD, self.framing.window, reflect=False,
                                transform="none", envelope_floor=1e-8)

    def core_state_specs(self, batch: int) -> list[StateSpec]:
        ins = [1] + self.encoder_channels[:-1]
        specs = [StateSpec(f"encoder{k}_previous", (batch, c, 1, w))
                 for k, (c, w) in enumerate(zip(ins, self.widths))]
        specs += [StateSpec(f"tcm{k}_cache", (batch, block.depthwise.in_channels, 2 * block.dilation))
                  for k, block in enumerate(self.tcm)]
        specs += [StateSpec(f"decoder{k}_previous", (batch, conv.in_channels, 1, width))
                  for k, (conv, width) in enumerate(zip(self.decoder, reversed(self.widths[1:])))]
        return specs

    def core_step(self, frame: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One frame ``[B, 320]``: every time kernel (2 frames, dilated 3-tap) reads its cached
        past inputs, the transposed convolutions their previous input (the dropped look-ahead
        frame is never computed)."""
        layers = len(self.encoder)
        blocks = len(self.tcm)
        new_state: list[torch.Tensor] = []
        x = frame[:, None, None]  # [B, 1, 1, 320]
        skips = []
        for k, (conv, norm, act) in enumerate(zip(self.encoder, self.encoder_norms,
                                                  self.encoder_acts)):
            window = torch.cat([state[k], x], dim=2)  # [B, C, 2, W]: previous and current frame
            new_state.append(x)
            x = act(norm(conv(window)))  # [B, C', 1, W']
            skips.append(x)
        batch, channels, _, width = x.shape
        y = x.permute(0, 1, 3, 2).reshape(batch, channels * width, 1)  # [B, 256, 1]
        for k, block in enumerate(self.tcm):
            h = block.norm1(block.act1(block.inp(y)))  # [B, H, 1]
            window = torch.cat([state[layers + k], h], dim=2)  # [B, H, 2d + 1]
            new_state.append(window[:, :, 1:])
            h = block.norm2(block.act2(block.depthwise(window)))
            y = y + block.out(h)
        x = y.reshape(batch, channels, width, 1).permute(0, 1, 3, 2)  # [B, C, 1, W]
        for k, (conv, norm, act, skip) in enumerate(zip(self.decoder, self.decoder_norms,
                                                        self.decoder_acts, reversed(skips))):
            z = torch.cat([x, skip], dim=1)  # [B, C, 1, W]
            new_state.append(z)
            window = torch.cat([state[layers + blocks + k], z], dim=2)  # [B, C, 2, W]
            x = act(norm(conv(window)[:, :, 1:2]))  # output frame t: z_t w0 + z_(t-1) w1
        return x[:, 0, 0], tuple(new_state)


# --------------------------------------------------------------------------------------------
# GCRN (complex spectral mapping)
# --------------------------------------------------------------------------------------------


class _GatedConv(nn.Module):
    """``conv(x) * sigmoid(gate(x))`` (Tan & Wang 2020, gated linear unit blocks)."""

    def __init__(self, cin: int, cout: int, transposed: bool = False,
                 output_padding: int = 0) -> None:
        super().__init__()
        if transposed:
            kw = dict(stride=(1, 2), output_padding=(0, output_padding))
            self.conv = nn.ConvTranspose2d(cin, cout, (1, 3), **kw)
            self.gate = nn.ConvTranspose2d(cin, cout, (1, 3), **kw)
        else:
            self.conv = nn.Conv2d(cin, cout, (1, 3), stride=(1, 2))
            self.gate = nn.Conv2d(cin, cout, (1, 3), stride=(1, 2))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.sigmoid(self.gate(x))


class _GroupedLSTM(nn.Module):
    """GCRN's grouped LSTM: per layer, ``groups`` LSTMs on slices of the features, then an
    interleaving rearrangement (after the first layer) and LayerNorm (Tan & Wang 2020, Sec. III-B).
    """

    def __init__(self, features: int, groups: int, num_layers: int) -> None:
        super().__init__()
        if features % groups:
            raise ConfigError(f"{features} features do not split into {groups} LSTM groups")
        self.groups = groups
        width = features // groups
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.LSTM(width, width, batch_first=True) for _ in range(groups))
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(features) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, features]
        last = len(self.layers) - 1
        for i, (lstms, norm) in enumerate(zip(self.layers, self.norms)):
            parts = x.chunk(self.groups, dim=-1)
            outs = [lstm(part)[0] for lstm, part in zip(lstms, parts)]
            # rearrangement between layers: interleave the groups' features
            x = torch.stack(outs, dim=-1).flatten(-2) if i < last else torch.cat(outs, dim=-1)
            x = norm(x)
        return x


    def state_specs(self, batch: int) -> list[StateSpec]:
        return [spec for i, lstms in enumerate(self.layers) for g, lstm in enumerate(lstms)
                for spec in rnn_state_specs(f"glstm{i}_group{g}", lstm, batch)]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One frame ``[B, features]`` with explicit ``(h, c)`` per group LSTM."""
        last = len(self.layers) - 1
        new_state: list[torch.Tensor] = []
        position = 0
        for i, (lstms, norm) in enumerate(zip(self.layers, self.norms)):
            outs = []
            for lstm, part in zip(lstms, x.chunk(self.groups, dim=-1)):
                out, hc = rnn_step(lstm, part, state[position : position + 2])
                outs.append(out)
                new_state.extend(hc)
                position += 2
            x = torch.stack(outs, dim=-1).flatten(-2) if i < last else torch.cat(outs, dim=-1)
            x = norm(x)
        return x, tuple(new_state)


class _GCRNDecoder(nn.Module):
    def __init__(self, encoder_channels: list[int], decoder_channels: list[int],
                 widths: list[int], bins: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = encoder_channels[-1]
        for k, cout in enumerate(decoder_channels):
            level = len(encoder_channels) - 1 - k  # encoder output this block undoes
            extra = widths[level] - ((widths[level + 1] - 1) * 2 + 3)
            self.blocks.append(_GatedConv(prev + encoder_channels[level], cout, True, extra))
            self.norms.append(nn.BatchNorm2d(cout))
            prev = cout
        self.act = nn.ELU()
        self.fc = nn.Linear(bins, bins)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, norm, skip in zip(self.blocks, self.norms, reversed(skips)):
            x = self.act(norm(block(torch.cat([x, skip], dim=1))))
        return self.fc(x).squeeze(1)  # [B, N, F]


@register_model("gcrn")
class GCRN(_PaddedSTFTStreaming, EnhancementModel):
    """Gated convolutional recurrent network, complex spectral mapping (004 Sec. III-B4;
    Tan & Wang 2020, GCRN-complex).

    Args:
        encoder_channels: channels of the 5 gated encoder blocks (16-32-64-128-256; GCRN_S
            16-32-64-64-128).
        decoder_channels: channels of the 5 gated decoder blocks of each decoder
            (128-64-32-16-1; GCRN_S 64-64-32-16-1); the last must be 1.
        lstm_groups: LSTM groups (2); each LSTM has ``features / groups`` units.
        lstm_layers: grouped LSTM layers (2).
        sample_rate: 16000.
    """

    def __init__(self, encoder_channels: list[int] | None = None,
                 decoder_channels: list[int] | None = None, lstm_groups: int = 2,
                 lstm_layers: int = 2, sample_rate: int = 16000) -> None:
        super().__init__(sample_rate)
        encoder_channels = list(encoder_channels or [16, 32, 64, 128, 256])
        decoder_channels = list(decoder_channels or [128, 64, 32, 16, 1])
        if len(decoder_channels) != len(encoder_channels) or decoder_channels[-1] != 1:
            raise ConfigError("decoder_channels must mirror encoder_channels and end in 1")
        self.encoder_channels = encoder_channels
        self.decoder_channels = decoder_channels
        self.lstm_groups = lstm_groups
        self.lstm_layers = lstm_layers
        self.stft = _stft()
        bins = self.stft.num_bins
        widths = [bins]
        for _ in encoder_channels:
            widths.append((widths[-1] - 3) // 2 + 1)  # 161, 80, 39, 19, 9, 4
        self.widths = widths
        ins = [2] + encoder_channels[:-1]
        self.encoder = nn.ModuleList(_GatedConv(a, b) for a, b in zip(ins, encoder_channels))
        self.encoder_norms = nn.ModuleList(nn.BatchNorm2d(c) for c in encoder_channels)
        self.act = nn.ELU()
        self.glstm = _GroupedLSTM(encoder_channels[-1] * widths[-1], lstm_groups, lstm_layers)
        self.decoder_real = _GCRNDecoder(encoder_channels, decoder_channels, widths, bins)
        self.decoder_imag = _GCRNDecoder(encoder_channels, decoder_channels, widths, bins)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav)  # [B, F, N]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, N, F]
        skips = []
        for conv, norm in zip(self.encoder, self.encoder_norms):
            x = self.act(norm(conv(x)))
            skips.append(x)
        batch, channels, frames, width = x.shape
        y = x.transpose(1, 2).reshape(batch, frames, channels * width)
        y = self.glstm(y)
        x = y.reshape(batch, frames, channels, width).transpose(1, 2)
        real = self.decoder_real(x, skips)
        imag = self.decoder_imag(x, skips)
        estimate = torch.complex(real, imag).transpose(1, 2)  # [B, F, N]
        return self.stft.inverse(estimate, length=wav.shape[-1])

    def core_sequence(self, re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([re, im], dim=1)  # [B, 2, N, F]
        skips = []
        for conv, norm in zip(self.encoder, self.encoder_norms):
            x = self.act(norm(conv(x)))
            skips.append(x)
        batch, channels, frames, width = x.shape
        y = self.glstm(x.transpose(1, 2).reshape(batch, frames, channels * width))
        x = y.reshape(batch, frames, channels, width).transpose(1, 2)
        return self.decoder_real(x, skips), self.decoder_imag(x, skips)  # [B, N, F] each

    def core_state_specs(self, batch: int) -> list[StateSpec]:
        return self.glstm.state_specs(batch)

    def core_step(self, features: tuple[torch.Tensor, torch.Tensor], state: State
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], State]:
        """One frame: the convolutions see one time step (kernels are 1 frame wide, BatchNorm
        is an affine map in eval mode), the grouped LSTM carries its state."""
        re, im = features  # [B, F] each
        x = torch.stack([re, im], dim=1)[:, :, None]  # [B, 2, 1, F]
        skips = []
        for conv, norm in zip(self.encoder, self.encoder_norms):
            x = self.act(norm(conv(x)))
            skips.append(x)
        batch, channels, _, width = x.shape
        y, state = self.glstm.step(x.reshape(batch, channels * width), state)
        x = y.reshape(batch, channels, 1, width)
        real = self.decoder_real(x, skips)[:, 0]  # [B, F]
        imag = self.decoder_imag(x, skips)[:, 0]
        return (real, imag), state


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------


def _presets() -> None:
    # 004 Sec. III-B (Tables I-III) and the small variants of Table IV (Sec. IV-C).
    register_preset("fdnn", dict(name="fdnn", hidden_size=2048, num_layers=3))
    register_preset("fdnn-small", dict(name="fdnn", hidden_size=200, num_layers=3))
    register_preset("lstm-4x1024", dict(name="lstm_map", hidden_size=1024, num_layers=4))
    register_preset("lstm-4x320", dict(name="lstm_map", hidden_size=320, num_layers=4))
    register_preset("tcnn", dict(name="tcnn"))
    # TCNN on its own framing (no padding: 399 frames for 4 s): 004's 4.80G (see the docstring)
    register_preset("tcnn-399", dict(name="tcnn", framing_pad=0))
    register_preset("tcnn-small", dict(name="tcnn", tcm_hidden=256, num_stacks=2))
    register_preset("gcrn", dict(name="gcrn"))
    register_preset("gcrn-small", dict(name="gcrn", encoder_channels=[16, 32, 64, 64, 128],
                                       decoder_channels=[64, 64, 32, 16, 1]))
    # Tiny ones for tests and CI.
    register_preset("tiny-fdnn", dict(name="fdnn", hidden_size=32, num_layers=2))
    register_preset("tiny-lstm-map", dict(name="lstm_map", hidden_size=32, num_layers=2))
    register_preset("tiny-tcnn", dict(name="tcnn", encoder_channels=[4, 4, 4, 4, 4, 8, 8],
                                      tcm_hidden=32, num_stacks=1, blocks_per_stack=3))
    register_preset("tiny-gcrn", dict(name="gcrn", encoder_channels=[4, 8, 8, 8, 8],
                                      decoder_channels=[8, 8, 8, 4, 1]))


_presets()

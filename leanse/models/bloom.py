"""BLOOM-Net (paper 003) and its Baseline 1, the plain ResNet-TasNet.

003 Sec. 2.1 (Baseline 1): encoder -> separator of ``l`` residual blocks -> masker -> decoder, a
simplified Conv-TasNet (003 Sec. 3.2): Conv-TasNet's encoder/decoder (N = 512, L = 16, stride 8)
and bottleneck (gLN + ``Conv1d(512, 128, 1)``), and blocks that are Conv-TasNet's 1-D conv blocks
*without dilation and without the skip path*::

    1x1 conv 128->512 -> PReLU -> gLN -> depthwise conv k=3 -> PReLU -> gLN -> 1x1 conv 512->128

(135,810 parameters each). Baseline 1 has one masker (PReLU + ``Conv1d(128, 512, 1)`` + ReLU) and
one decoder after its last block.

003 Sec. 2.3 (BLOOM-Net): the separator blocks ``Sep^(l)`` are chained residually in the latent
space (eq. 1: ``zbar^(l) = z^(l) + zbar^(l-1)``, ``z^(l) = Sep^(l)(zbar^(l-1))``) and every
block has its own masker ``Mas^(l)`` and decoder ``Dec^(l)`` (eq. 2), so inference can stop after
any block ``l``: encoder, blocks 1..l, masker l, decoder l. Each extra block costs 210,051
parameters (block 135,810 + masker 66,049 + decoder 8,192).

Training (003 Sec. 2.3, 3.3), what :meth:`BloomNet.freeze_below` supports: greedy stage ``l``
trains block ``l`` with its masker and decoder on the loss of exit ``l``, everything earlier
frozen. The shared encoder and bottleneck are trained with block 1 (stage 1 is an ordinary
1-block model) and frozen afterwards -- 003 says Enc "is shared and reused for all the sequence of
blocks" and that Mas/Dec are "no longer updated once the l-th block is trained"; the authors'
code release freezes "all previous blocks and encoder module" in later stages. BLOOM-FT then
updates everything on the sum of all exit losses (:meth:`BloomNet.forward_all_exits`).

Choices the paper leaves open or states loosely, and what we do:

* Masker input: eq. (2) writes ``Mas^(l)(z^(l))``, but the masker reads the running residual
  sum ``zbar^(l)`` -- what Conv-TasNet's masker reads (without skip path) and what the authors'
  released code does. ``h^(l)`` in eq. (2) is the one shared encoder output ``h``.
* Padding/framing as Conv-TasNet's reference code (see :mod:`leanse.models.tasnet`): 2002
  frames for 1 s. The published MACs (0.53G..1.87G) need it.
* Mask nonlinearity ReLU (FIDELITY 003); no encoder nonlinearity; gLN eps 1e-8.
* Causal mode (not in the paper): cLN for every gLN, depthwise convs padded on the left only.

Published MACs leave out the encoder and decoder: count them with
``leanse.complexity.trace_cost(view, view.example_input(seconds))`` where
``view = model.separator_masker(l)`` (see :class:`SeparatorMasker`).
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.errors import ConfigError
from leanse.models.base import EnhancementModel, register_model, register_preset
from leanse.models.streaming import State, StateSpec
from leanse.models.tasnet import (
    LearnedDecoder,
    LearnedEncoder,
    MaskHead,
    apply_masks,
    make_norm,
)


class BlocksError(ConfigError, ValueError):
    """``blocks`` outside ``1..num_blocks``: a user error (one-line CLI message), still a ValueError."""


def check_blocks(blocks: int | None, num_blocks: int) -> int:
    """The depth to run: ``None`` -> all ``num_blocks``; anything outside ``1..num_blocks`` ->
    :class:`BlocksError` (every scalable model and ``--blocks`` check it here)."""
    if blocks is None:
        return num_blocks
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= num_blocks:
        raise BlocksError(
            f"this model has {num_blocks} blocks; --blocks must be between 1 and {num_blocks}, not {blocks!r}"
        )
    return blocks


class Bottleneck(nn.Module):
    """Conv-TasNet's shared bottleneck: norm -> ``Conv1d(N, C, 1)`` (with bias)."""

    def __init__(self, n_filters: int, channels: int, causal: bool = False) -> None:
        super().__init__()
        self.norm = make_norm(n_filters, causal)
        self.conv = nn.Conv1d(n_filters, channels, 1)

    def forward(self, mix_rep: torch.Tensor) -> torch.Tensor:
        """``[B, N, F]`` -> ``[B, C, F]``: ``zbar^(0)``."""
        return self.conv(self.norm(mix_rep))

    def state_specs(self, batch: int) -> list[StateSpec]:
        return self.norm.state_specs("bottleneck_norm", batch)

    def step(self, rep: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        normed, state = self.norm.step(rep, state)
        return self.conv(normed), state


class SeparatorBlock(nn.Module):
    """``Sep^(l)``: Conv-TasNet's 1-D conv block without dilation and skip output (003 Sec. 3.2).

    Returns the residual branch ``z^(l)``; the caller adds it to its input (003 eq. 1).
    """

    def __init__(
        self, channels: int, hidden_channels: int, kernel_size: int = 3, causal: bool = False
    ) -> None:
        super().__init__()
        self.in_conv = nn.Conv1d(channels, hidden_channels, 1)
        self.in_prelu = nn.PReLU()
        self.in_norm = make_norm(hidden_channels, causal)
        total_pad = kernel_size - 1
        # Causal: all padding on the left, so frame t sees frames t-k+1..t only.
        self.padding = (total_pad, 0) if causal else (total_pad // 2, total_pad - total_pad // 2)
        self.depthwise = nn.Conv1d(
            hidden_channels, hidden_channels, kernel_size, groups=hidden_channels
        )
        self.depthwise_prelu = nn.PReLU()
        self.depthwise_norm = make_norm(hidden_channels, causal)
        self.out_conv = nn.Conv1d(hidden_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, F]`` -> ``[B, C, F]``."""
        y = self.in_norm(self.in_prelu(self.in_conv(x)))  # [B, H, F]
        y = self.depthwise(nn.functional.pad(y, self.padding))  # [B, H, F]
        y = self.depthwise_norm(self.depthwise_prelu(y))
        return self.out_conv(y)  # [B, C, F]

    def state_specs(self, prefix: str, batch: int) -> list[StateSpec]:
        hidden, width = self.depthwise.in_channels, self.depthwise.kernel_size[0] - 1
        return (self.in_norm.state_specs(f"{prefix}_in_norm", batch)
                + [StateSpec(f"{prefix}_depthwise_cache", (batch, hidden, width))]
                + self.depthwise_norm.state_specs(f"{prefix}_depthwise_norm", batch))

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``n`` frames ``[B, C, n]`` (causal blocks): cLN sums and the depthwise conv's last
        ``kernel - 1`` inputs carried in ``state``."""
        y, in_norm = self.in_norm.step(self.in_prelu(self.in_conv(x)), state[0:3])
        window = torch.cat([state[3], y], dim=2)  # [B, H, kernel]
        y, depthwise_norm = self.depthwise_norm.step(self.depthwise_prelu(self.depthwise(window)),
                                                     state[4:7])
        cache = window[:, :, window.shape[2] - state[3].shape[2] :]  # the last kernel - 1 inputs
        return self.out_conv(y), (*in_norm, cache, *depthwise_norm)


class SeparatorMasker(nn.Module):
    """The part of a ResNet-TasNet / BLOOM-Net exit that 003 Table 2 counts.

    Shared bottleneck, separator blocks 1..l and masker l, from encoder frames to masks. The
    encoder and decoder are not submodules, so any profiler that walks the module tree counts
    exactly "separator + masker"::

        view = model.separator_masker(blocks=3)
        trace_cost(view, view.example_input(1.0), "paper").macs   # 1.07G for bloom-l3

    ``count_parameters(view)`` likewise counts what runs for that exit minus encoder/decoder.
    """

    def __init__(
        self,
        bottleneck: nn.Module,
        separators: list[nn.Module],
        masker: nn.Module,
        encoder: LearnedEncoder,
        sample_rate: int,
    ) -> None:
        super().__init__()
        self.shared_bottleneck = bottleneck
        self.separators = nn.ModuleList(separators)
        self.masker = masker
        # A tuple keeps the encoder out of the module tree (not counted, not a parameter here).
        self._encoder = (encoder,)
        self._sample_rate = sample_rate

    def example_input(self, seconds: float, seed: int = 0) -> torch.Tensor:
        """Encoder frames ``[1, N, F]`` of ``seconds`` of seeded noise: the counting input."""
        samples = int(round(seconds * self._sample_rate))
        encoder = self._encoder[0]
        noise = 0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return encoder(noise.to(encoder.conv.weight))

    def forward(self, mix_rep: torch.Tensor) -> torch.Tensor:
        """``[B, N, F]`` encoder frames -> ``[B, 1, N, F]`` masks."""
        stream = self.shared_bottleneck(mix_rep)
        for separator in self.separators:
            stream = stream + separator(stream)
        return self.masker(stream)


class ResNetTasNetBase(EnhancementModel):
    """Encoder, shared bottleneck and ``num_blocks`` residual separator blocks (003 Sec. 2.1)."""

    def __init__(
        self,
        num_blocks: int = 6,
        n_filters: int = 512,
        kernel_size: int = 16,
        stride: int = 8,
        bottleneck: int = 128,
        hidden_channels: int = 512,
        conv_kernel_size: int = 3,
        mask_activation: str = "relu",
        causal: bool = False,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(sample_rate)
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, not {num_blocks}")
        self.num_blocks = num_blocks
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.bottleneck = bottleneck
        self.hidden_channels = hidden_channels
        self.conv_kernel_size = conv_kernel_size
        self.mask_activation = mask_activation
        self.causal = causal

        self.encoder = LearnedEncoder(n_filters, kernel_size, stride)
        self.shared_bottleneck = Bottleneck(n_filters, bottleneck, causal)
        self.separators = nn.ModuleList(
            SeparatorBlock(bottleneck, hidden_channels, conv_kernel_size, causal)
            for _ in range(num_blocks)
        )

    # -- streaming (causal models): one encoder frame per step ------------------------------

    #: the exit a stream runs (BLOOM-Net: chosen when the stream starts, see :meth:`streamer`)
    stream_exit: int | None = None
    #: encoder frames per step: 1 gives the lowest latency (a hop of one stride, 0.5 ms at 003's
    #: settings) but a step's fixed cost is paid 2000 times a second; more frames per hop amortise it
    stream_frames: int = 1

    def not_streamable_reason(self) -> str | None:
        if not self.causal:
            return (f"{self.registered_name} with causal=False is not causal (centred depthwise"
                    " convolutions and global layer norms look ahead), so it cannot stream; train"
                    " it with causal: true")
        if self.kernel_size != 2 * self.stride:
            return f"streaming needs kernel_size == 2 * stride, not {self.kernel_size}/{self.stride}"
        return None

    @property
    def hop(self) -> int:
        return self.stride * self.stream_frames

    @property
    def latency_samples(self) -> int:
        return self.kernel_size - self.stride

    @property
    def lookahead(self) -> int:
        return self.kernel_size - self.stride

    def _stream_blocks(self) -> int:
        return self.check_blocks(self.stream_exit)

    def state_specs(self, batch: int = 1) -> list[StateSpec]:
        self._require_streamable()
        width = self.kernel_size - self.stride
        specs = [StateSpec("encoder_buffer", (batch, width))]
        specs += self.shared_bottleneck.state_specs(batch)
        for index in range(self._stream_blocks()):
            specs += self.separators[index].state_specs(f"block{index + 1}", batch)
        return specs + [StateSpec("decoder_ola", (batch, width))]

    def _step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        blocks = self._stream_blocks()
        rep, encoder_buffer = self.encoder.step(x_hop, state[0])  # [B, N, 1]
        stream, bottleneck = self.shared_bottleneck.step(rep, state[1:4])
        new_state: list[torch.Tensor] = [encoder_buffer, *bottleneck]
        for index in range(blocks):
            block_state = state[4 + 7 * index : 11 + 7 * index]
            residual, block_state = self.separators[index].step(stream, block_state)
            stream = stream + residual  # 003 eq. (1)
            new_state.extend(block_state)
        masker, decoder = self._stream_head(blocks)
        masked = apply_masks(rep, masker(stream))[:, 0]  # [B, N, 1]
        y_hop, ola = decoder.step(masked, state[-1])
        new_state.append(ola)
        return y_hop, tuple(new_state)

    def streamer(self, batch: int = 1, blocks: int | None = None, frames_per_hop: int | None = None):
        """A streamer running exit ``blocks`` (BLOOM-Net; default: the last) for its whole
        stream: blocks after it keep no state and cost nothing. A different exit needs a new
        stream, because the skipped blocks' norms and caches did not see the past frames.
        ``frames_per_hop`` encoder frames per step (hop = that many strides)."""
        self.stream_exit = self.check_blocks(blocks)
        if frames_per_hop is not None:
            if frames_per_hop < 1:
                raise BlocksError(f"frames_per_hop must be at least 1, not {frames_per_hop}")
            self.stream_frames = int(frames_per_hop)
        return super().streamer(batch)

    def _new_masker(self) -> MaskHead:
        return MaskHead(self.bottleneck, self.n_filters, 1, self.mask_activation)

    def _new_decoder(self) -> LearnedDecoder:
        return LearnedDecoder(self.n_filters, self.kernel_size, self.stride)

    def separate(self, mix_rep: torch.Tensor, blocks: int) -> torch.Tensor:
        """``[B, N, F]`` encoder frames -> ``[B, C, F]`` residual stream ``zbar^(blocks)``."""
        stream = self.shared_bottleneck(mix_rep)  # zbar^(0)
        for separator in self.separators[:blocks]:
            stream = stream + separator(stream)  # 003 eq. (1)
        return stream

    def check_blocks(self, blocks: int | None) -> int:
        """``None`` -> all blocks; anything outside ``1..num_blocks`` -> :class:`BlocksError`."""
        return check_blocks(blocks, self.num_blocks)


@register_model("resnet_tasnet")
class ResNetTasNet(ResNetTasNetBase):
    """Baseline 1 of 003: ``num_blocks`` residual blocks trained end to end, one masker/decoder.

    ``resnet-tasnet-l{l}`` has 284,931 + (l-1) * 135,810 parameters (0.28M .. 0.96M).

    Args:
        num_blocks: separator blocks ``l``.
        n_filters, kernel_size, stride: Conv-TasNet filterbank (512, 16, 8).
        bottleneck: block input/output channels (128).
        hidden_channels: channels inside a block (512).
        conv_kernel_size: depthwise kernel (3, dilation 1).
        mask_activation: ``"relu"`` (003) or ``"sigmoid"``.
        causal: cLN and left-padded depthwise convs.
        sample_rate: 16000 in 003.
    """

    def __init__(
        self,
        num_blocks: int = 6,
        n_filters: int = 512,
        kernel_size: int = 16,
        stride: int = 8,
        bottleneck: int = 128,
        hidden_channels: int = 512,
        conv_kernel_size: int = 3,
        mask_activation: str = "relu",
        causal: bool = False,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(num_blocks, n_filters, kernel_size, stride, bottleneck, hidden_channels,
                         conv_kernel_size, mask_activation, causal, sample_rate)
        self.masker = self._new_masker()
        self.decoder = self._new_decoder()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, T]``."""
        mix_rep = self.encoder(wav)  # [B, N, F]
        masks = self.masker(self.separate(mix_rep, self.num_blocks))  # [B, 1, N, F]
        return self.decoder(apply_masks(mix_rep, masks), wav.shape[-1])[:, 0]

    def _stream_head(self, blocks: int) -> tuple[nn.Module, LearnedDecoder]:
        return self.masker, self.decoder

    def _stream_blocks(self) -> int:
        if self.stream_exit not in (None, self.num_blocks):
            raise BlocksError(f"a ResNet-TasNet of {self.num_blocks} blocks has a single exit after all of them")
        return self.num_blocks

    def separator_masker(self, blocks: int | None = None) -> SeparatorMasker:
        """Bottleneck + all blocks + the masker: what 003 Table 2's MACs count.

        Baseline 1 has one head, so only ``blocks=None`` or ``blocks=num_blocks`` is meaningful.
        """
        if self.check_blocks(blocks) != self.num_blocks:
            raise BlocksError(f"a ResNet-TasNet of {self.num_blocks} blocks has a single exit after all of them")
        return SeparatorMasker(self.shared_bottleneck, list(self.separators), self.masker,
                               self.encoder, self.sample_rate)


@register_model("bloom_net")
class BloomNet(ResNetTasNetBase):
    """BLOOM-Net (003 Sec. 2.3): residual blocks with an exit (masker + decoder) after each.

    ``bloom-l{l}`` has 284,931 + (l-1) * 210,051 parameters (0.28M .. 1.34M).

    ``forward(wav, blocks=l)`` runs the encoder, blocks ``1..l``, masker ``l`` and decoder ``l``
    only; ``forward_all_exits`` gives every exit's estimate from one pass (BLOOM-FT's summed loss).
    Arguments as :class:`ResNetTasNet`.
    """

    def __init__(
        self,
        num_blocks: int = 6,
        n_filters: int = 512,
        kernel_size: int = 16,
        stride: int = 8,
        bottleneck: int = 128,
        hidden_channels: int = 512,
        conv_kernel_size: int = 3,
        mask_activation: str = "relu",
        causal: bool = False,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(num_blocks, n_filters, kernel_size, stride, bottleneck, hidden_channels,
                         conv_kernel_size, mask_activation, causal, sample_rate)
        self.maskers = nn.ModuleList(self._new_masker() for _ in range(num_blocks))
        self.decoders = nn.ModuleList(self._new_decoder() for _ in range(num_blocks))

    def _exit(
        self, block: int, stream: torch.Tensor, mix_rep: torch.Tensor, length: int
    ) -> torch.Tensor:
        """Estimate of exit ``block`` (1-based) from ``zbar^(block)``: 003 eq. (2)."""
        masks = self.maskers[block - 1](stream)  # [B, 1, N, F]
        return self.decoders[block - 1](apply_masks(mix_rep, masks), length)[:, 0]  # [B, T]

    def forward(self, wav: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """``[B, T]`` -> ``[B, T]``, the estimate of exit ``blocks`` (default: the last)."""
        blocks = self.check_blocks(blocks)
        mix_rep = self.encoder(wav)  # [B, N, F] = h
        return self._exit(blocks, self.separate(mix_rep, blocks), mix_rep, wav.shape[-1])

    def _stream_head(self, blocks: int) -> tuple[nn.Module, LearnedDecoder]:
        return self.maskers[blocks - 1], self.decoders[blocks - 1]

    def forward_all_exits(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, L, T]``: the estimates of exits 1..L from one pass."""
        mix_rep = self.encoder(wav)
        stream = self.shared_bottleneck(mix_rep)
        estimates = []
        for block, separator in enumerate(self.separators, start=1):
            stream = stream + separator(stream)
            estimates.append(self._exit(block, stream, mix_rep, wav.shape[-1]))
        return torch.stack(estimates, dim=1)  # [B, L, T]

    def stage_modules(self, block: int) -> list[nn.Module]:
        """Modules greedy stage ``block`` trains: ``Sep``, ``Mas``, ``Dec`` of that block,
        plus the shared encoder and bottleneck in stage 1."""
        block = self.check_blocks(block)
        modules: list[nn.Module] = [
            self.separators[block - 1], self.maskers[block - 1], self.decoders[block - 1]
        ]
        if block == 1:
            modules = [self.encoder, self.shared_bottleneck, *modules]
        return modules

    def freeze_below(self, block: int) -> list[nn.Parameter]:
        """Prepare greedy stage ``block``; returns the parameters to optimise.

        Sets ``requires_grad`` on the stage's modules (:meth:`stage_modules`) only: blocks before
        ``block`` with their exits, the encoder and bottleneck (after stage 1) are frozen, and
        later blocks -- not trained yet, not run by ``forward(wav, blocks=block)`` -- too.
        """
        stage = self.stage_modules(block)
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        trainable = [p for module in stage for p in module.parameters()]
        for parameter in trainable:
            parameter.requires_grad_(True)
        return trainable

    def unfreeze(self) -> list[nn.Parameter]:
        """BLOOM-FT: every module trainable again (fine-tune on the sum of exit losses)."""
        for parameter in self.parameters():
            parameter.requires_grad_(True)
        return list(self.parameters())

    def separator_masker(self, blocks: int | None = None) -> SeparatorMasker:
        """Bottleneck + blocks ``1..blocks`` + masker ``blocks``: what 003 Table 2 counts."""
        blocks = self.check_blocks(blocks)
        return SeparatorMasker(self.shared_bottleneck, list(self.separators[:blocks]),
                               self.maskers[blocks - 1], self.encoder, self.sample_rate)


# ================================================================================================
# The baselines of 003 as scalable models: forward(wav, blocks=l), as BLOOM-Net runs
# ================================================================================================


class Scalable(nn.Module):
    """A waveform model whose ``forward(wav, blocks=l)`` runs its depth-``l`` profile."""

    num_sources = 1

    def __init__(self, num_blocks: int, sample_rate: int) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.sample_rate = sample_rate

    def check_blocks(self, blocks: int | None) -> int:
        return check_blocks(blocks, self.num_blocks)


class SingleHeadAfter(Scalable):
    """Baseline 1 Full at depth ``l``: blocks ``1..l`` then the model's one masker and decoder."""

    def __init__(self, model: ResNetTasNet) -> None:
        super().__init__(model.num_blocks, model.sample_rate)
        self.model = model

    def forward(self, wav: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """``[B, T]`` -> ``[B, T]``."""
        blocks = self.check_blocks(blocks)
        m = self.model
        mix_rep = m.encoder(wav)  # [B, N, F]
        masks = m.masker(m.separate(mix_rep, blocks))  # [B, 1, N, F]
        return m.decoder(apply_masks(mix_rep, masks), wav.shape[-1])[:, 0]


class OnePerDepth(Scalable):
    """Baseline 1 Int.: depth ``l`` runs the ``l``-block model (L models side by side)."""

    def __init__(self, models: list[ResNetTasNet]) -> None:
        super().__init__(len(models), models[0].sample_rate)
        self.models = nn.ModuleList(models)

    def forward(self, wav: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        return self.models[self.check_blocks(blocks) - 1](wav)


class Cascade(Scalable):
    """Baseline 2 (003 Fig. 2a): depth ``l`` runs one-block models ``1..l`` one after another."""

    def __init__(self, models: list[ResNetTasNet]) -> None:
        super().__init__(len(models), models[0].sample_rate)
        self.models = nn.ModuleList(models)

    def forward(self, wav: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        for model in self.models[: self.check_blocks(blocks)]:
            wav = model(wav)  # s_hat^(l) = F^(l)(s_hat^(l-1))
        return wav


def _bloom_presets() -> None:
    paper = dict(n_filters=512, kernel_size=16, stride=8, bottleneck=128, hidden_channels=512,
                 conv_kernel_size=3, sample_rate=16000)
    for blocks in range(1, 7):
        register_preset(f"bloom-l{blocks}", dict(name="bloom_net", num_blocks=blocks, **paper))
        register_preset(
            f"resnet-tasnet-l{blocks}", dict(name="resnet_tasnet", num_blocks=blocks, **paper)
        )
    # Trains in minutes on two CPU cores: 8 kHz, 2 ms window, 4 small blocks.
    tiny = dict(num_blocks=4, n_filters=64, kernel_size=16, stride=8, bottleneck=32,
                hidden_channels=64, conv_kernel_size=3, sample_rate=8000)
    register_preset("tiny-bloom", dict(name="bloom_net", **tiny))
    register_preset("tiny-resnet-tasnet", dict(name="resnet_tasnet", **tiny))


_bloom_presets()

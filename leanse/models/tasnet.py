"""TasNet parts shared by DPRNN-TasNet, GroupComm-DPRNN-TasNet (002) and BLOOM-Net (003).

A time-domain masking network (002 Sec. 3.2, 003 Sec. 2.1) is encoder -> separator -> mask ->
decoder. This module holds everything except the separator:

* :class:`LearnedEncoder` / :class:`LearnedDecoder` -- the trainable 1-D convolutional
  filterbank of TasNet: ``Conv1d(1, N, L, stride L/2, no bias)`` and its transposed twin.
* :class:`GlobalLayerNorm` (gLN) and :class:`CumulativeLayerNorm` (cLN), the non-causal and
  causal normalisations of Conv-TasNet's separation module (Luo & Mesgarani, TASLP 2019).
* :class:`MaskHead` and :func:`apply_masks`, the mask estimation layer and its use.

Choices the papers leave open, taken from the cited originals:

* Framing. The reference code of the cited originals (Conv-TasNet, cited by 003 for its
  encoder/decoder, and DPRNN-TasNet, 002's baseline; both by Luo) pads the waveform with
  ``stride`` zeros in front and ``rest + stride`` at the end, ``rest = L - (stride + T mod L)
  mod L``, and cuts the padding off after decoding: 4002 frames for 4 s at 16 kHz (002), 2002
  for 1 s (003). The published MACs need it: with Asteroid's unpadded encoder (1999 frames for
  1 s) ``bloom-l3`` would count 1.064G and print 1.06G, not the published 1.07G.
* No nonlinearity after the encoder (Conv-TasNet's and Asteroid's default).
* gLN / cLN use ``eps = 1e-8`` as Conv-TasNet does.
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.errors import ConfigError

#: Conv-TasNet's normalisation epsilon.
NORM_EPS = 1e-8


class GlobalLayerNorm(nn.GroupNorm):
    """gLN: normalise over channels *and* time, per-channel gain and bias (Conv-TasNet).

    Identical to ``nn.GroupNorm(1, C)``, which is what the DPRNN reference code uses for 002's
    "LN" (FIDELITY 002 writes it so); a named subclass so printouts say gLN. Neither counts MACs
    in the ``paper`` convention, as the published numbers assume. Accepts ``[B, C, *]`` of any
    rank, so it also serves the 4-D dual-path tensors.
    """

    def __init__(self, channels: int, eps: float = NORM_EPS) -> None:
        super().__init__(1, channels, eps=eps)


def cumulative_normalize(
    x: torch.Tensor,
    sum_: torch.Tensor,
    sum_sq: torch.Tensor,
    count: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Normalise ``x`` with running statistics broadcast against it.

    ``sum_``, ``sum_sq`` and ``count`` are cumulative sums of ``x``, ``x**2`` and element counts up
    to each time step (already broadcastable to ``x``).
    """
    mean = sum_ / count
    # E[x^2] - E[x]^2 can come out slightly negative in float32 rounding; clamp so the square
    # root never sees a negative number.
    var = (sum_sq / count - mean.pow(2)).clamp_min(0.0)
    inv_std = torch.rsqrt(var + eps)
    # (x - mean) / std as one fused pass over x (x * inv_std - mean * inv_std): the statistics are
    # per frame, x is per channel and frame, and these passes bound a causal TasNet's offline speed
    return torch.addcmul(-mean * inv_std, x, inv_std)


class CumulativeLayerNorm(nn.Module):
    """cLN: statistics over channels and all frames up to ``t`` (Conv-TasNet eq. 15-16).

    The causal counterpart of gLN for ``[B, C, T]`` tensors: frame ``t`` never sees frames
    after ``t``.
    """

    def __init__(self, channels: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def exact_macs(self, args: tuple, kwargs: dict, output: torch.Tensor) -> int:
        """``leanse.complexity`` "exact" rule: 2 per element, as for every run-time norm."""
        return 2 * output.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T]`` -> ``[B, C, T]``."""
        channels, frames = x.shape[1], x.shape[2]
        sum_ = x.sum(1, keepdim=True).cumsum(-1)  # [B, 1, T]
        sum_sq = x.pow(2).sum(1, keepdim=True).cumsum(-1)  # [B, 1, T]
        count = channels * torch.arange(1, frames + 1, device=x.device, dtype=x.dtype)  # [T]
        y = cumulative_normalize(x, sum_, sum_sq, count, self.eps)
        return torch.addcmul(self.bias[:, None], y, self.weight[:, None])  # y * weight + bias, one pass


    # -- streaming: the running sums are the state ----------------------------------------

    def state_specs(self, prefix: str, batch: int) -> list:
        from leanse.models.streaming import StateSpec

        return [StateSpec(f"{prefix}_sum", (batch, 1, 1)), StateSpec(f"{prefix}_sum_sq", (batch, 1, 1)),
                StateSpec(f"{prefix}_count", (1,))]

    def step(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """``n`` new frames ``[B, C, n]`` with the running ``(sum, sum of squares, count)``."""
        sum_, sum_sq, count = state
        if x.shape[-1] == 1:
            sums = sum_ + x.sum(1, keepdim=True)  # [B, 1, 1]
            sums_sq = sum_sq + x.pow(2).sum(1, keepdim=True)
            counts = count + x.shape[1]
        else:
            sums = sum_ + x.sum(1, keepdim=True).cumsum(-1)  # [B, 1, n]
            sums_sq = sum_sq + x.pow(2).sum(1, keepdim=True).cumsum(-1)
            steps = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
            counts = count + x.shape[1] * steps  # [n]
        y = cumulative_normalize(x, sums, sums_sq, counts, self.eps)
        new_state = (sums[..., -1:], sums_sq[..., -1:], counts[-1:].reshape(1))
        return torch.addcmul(self.bias[:, None], y, self.weight[:, None]), new_state


def make_norm(channels: int, causal: bool) -> nn.Module:
    """gLN for non-causal models (the papers' setting), cLN for causal ones (``[B, C, T]``)."""
    return CumulativeLayerNorm(channels) if causal else GlobalLayerNorm(channels)


def frame_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """Zeros to add ``(front, end)`` before framing, as Conv-TasNet's reference code does.

    ``front = stride`` and ``end = rest + stride`` with ``rest = L - (stride + T mod L) mod L``,
    so every sample is covered by the same number of frames and the transposed convolution
    returns exactly the padded length.
    """
    rest = kernel_size - (stride + length % kernel_size) % kernel_size
    return stride, rest + stride


class LearnedEncoder(nn.Module):
    """Waveform -> latent frames: ``Conv1d(1, N, L, stride, no bias)``.

    002 Sec. 3.2 uses a 2 ms window (L = 32, stride 16 at 16 kHz, N = 128 or 256); 003 Sec. 3.2
    uses Conv-TasNet's N = 512, L = 16, stride 8.
    """

    def __init__(self, n_filters: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if kernel_size % stride:
            raise ConfigError(
                f"kernel_size ({kernel_size}) must be a multiple of stride ({stride}) so the "
                "decoder can rebuild every sample"
            )
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(1, n_filters, kernel_size, stride=stride, bias=False)

    def num_frames(self, length: int) -> int:
        """Frames produced for a waveform of ``length`` samples."""
        front, end = frame_padding(length, self.kernel_size, self.stride)
        return (front + length + end - self.kernel_size) // self.stride + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, N, F]``."""
        front, end = frame_padding(wav.shape[-1], self.kernel_size, self.stride)
        padded = nn.functional.pad(wav, (front, end))  # [B, front + T + end]
        return self.conv(padded.unsqueeze(1))  # [B, N, F]


    def step(self, x_hop: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Streaming (``kernel_size == 2 * stride``): ``[B, n * stride]`` new samples and the
        previous ``kernel - stride`` -> ``n`` frames ``[B, N, n]`` and the next buffer. The zero
        initial buffer is the offline front padding (``stride`` zeros)."""
        frames = torch.cat([buffer, x_hop], dim=1)  # [B, kernel - stride + n * stride]
        return self.conv(frames[:, None]), frames[:, frames.shape[1] - (self.kernel_size - self.stride) :]


class LearnedDecoder(nn.Module):
    """Latent frames -> waveform: ``ConvTranspose1d(N, 1, L, stride, no bias)`` (overlap-add).

    Cuts off the padding :class:`LearnedEncoder` added, so the output has the input's length.
    """

    def __init__(self, n_filters: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, bias=False)

    def forward(self, rep: torch.Tensor, length: int) -> torch.Tensor:
        """``[..., N, F]`` -> ``[..., length]``; leading dims (batch, sources) are kept."""
        lead = rep.shape[:-2]
        wav = self.conv(rep.reshape(-1, *rep.shape[-2:])).squeeze(1)  # [B*, padded length]
        front, _ = frame_padding(length, self.kernel_size, self.stride)
        return wav[:, front : front + length].reshape(*lead, length)


    def step(self, rep: torch.Tensor, ola: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` frames ``[B, N, n]`` and the pending overlap-add ``[B, kernel - stride]`` ->
        ``[B, n * stride]`` final samples and the next pending sums."""
        contribution = self.conv(rep)[:, 0]  # [B, (n - 1) * stride + kernel]
        emitted = contribution.shape[1] - ola.shape[1]  # n * stride
        total = contribution + nn.functional.pad(ola, (0, emitted))
        return total[:, :emitted], total[:, emitted:]


#: Mask nonlinearities. 002 and 003 (and FIDELITY) use ReLU; sigmoid is Conv-TasNet's.
MASK_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def make_mask_activation(name: str) -> nn.Module:
    """The mask nonlinearity as a module (so profilers see it: ReLU/sigmoid count 0 MACs)."""
    if name not in MASK_ACTIVATIONS:
        raise ConfigError(
            f"mask_activation must be one of {sorted(MASK_ACTIVATIONS)}, not {name!r}"
        )
    return MASK_ACTIVATIONS[name]()


class MaskHead(nn.Module):
    """``PReLU -> 1x1 Conv1d(C, S*N) -> activation``: masks for S sources from separator features.

    Conv-TasNet's mask estimation layer (also 003's per-block masker ``Mas^(l)``, 003 eq. 2).
    """

    def __init__(
        self, in_channels: int, n_filters: int, num_sources: int = 1, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.n_filters = n_filters
        self.num_sources = num_sources
        self.prelu = nn.PReLU()
        self.conv = nn.Conv1d(in_channels, num_sources * n_filters, 1)
        self.activation = make_mask_activation(activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, F]`` -> ``[B, S, N, F]``."""
        scores = self.conv(self.prelu(features))  # [B, S*N, F]
        masks = self.activation(scores)
        return masks.view(masks.shape[0], self.num_sources, self.n_filters, -1)  # [B, S, N, F]


def apply_masks(mix_rep: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``[B, N, F]`` mixture frames x ``[B, S, N, F]`` masks -> ``[B, S, N, F]`` source frames."""
    return mix_rep.unsqueeze(1) * masks


def squeeze_single_source(estimates: torch.Tensor, num_sources: int) -> torch.Tensor:
    """``[B, S, T]`` -> ``[B, T]`` for enhancement models (S = 1), unchanged for separation."""
    return estimates[:, 0] if num_sources == 1 else estimates

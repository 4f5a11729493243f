"""Dual-path RNN (Luo, Chen & Yoshioka, ICASSP 2020) and DPRNN-TasNet, the baseline of 002.

002 Sec. 2.2.1 recaps the DPRNN block that this module implements:

1. *Segmentation*: the frame sequence ``H`` (``[N, L]``) is cut into ``S`` chunks of length
   ``2T`` with hop ``T`` (50 % overlap); the first and last chunks are zero padded so every frame
   appears in exactly two chunks, giving the 3-D tensor ``T`` (``[N, 2T, S]``).
2. *Intra-chunk RNN* (002 eq. 2): a BLSTM along each chunk, a Linear layer back to the feature
   size, a layer normalisation and a residual add, giving ``Q``.
3. *Inter-chunk RNN* (002 eq. 3): the same along the chunk index ``S`` at each position.
4. After the last block, *overlap-add* turns the chunks back into an ``[N, L]`` sequence.

Choices the paper leaves open, taken from the DPRNN reference implementation (Yi Luo, first
author of DPRNN and of 002), and what FIDELITY 002 confirms reproduces the published counts:

* Chunk length 100 frames, hop 50. Padding: ``hop`` zeros in front and ``rest + hop`` at the end
  with ``rest = 2T - (T + L mod 2T) mod 2T`` (82 chunks for the 4002 frames of 4 s at 16 kHz).
* The "LN" is ``GroupNorm(1, C)`` -- statistics over the feature, chunk-position and chunk axes of
  each utterance (i.e. gLN on the 3-D tensor), ``eps = 1e-8``.
* The mask layer is ``PReLU -> Conv2d(C, S_src * N, 1)`` applied to the chunks *before*
  overlap-add, then the mask nonlinearity (ReLU in 002 Sec. 3.2).
* Encoder output -> ``GroupNorm(1, N)`` (its 2N parameters are in the published counts) ->
  bottleneck ``Conv1d(N, C, 1, no bias)`` -> DPRNN; the masks multiply the encoder output
  itself, not its normalised copy, as in every TasNet.

Causal mode (``causal=True``, not in the papers): both RNNs become unidirectional (the reference
code keeps the intra-chunk RNN bidirectional, which looks up to one chunk -- 100 ms at 002's
settings -- ahead; we do not), every norm becomes a cumulative LN whose statistics run over *time* across the chunked
tensor (:class:`ChunkedCumulativeLayerNorm`), and the encoder norm becomes cLN. The output at
sample ``t`` then depends on input up to ``t`` plus one encoder window (2 ms) of look-ahead.
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.errors import ConfigError
from leanse.models.base import EnhancementModel, register_model, register_preset
from leanse.models.streaming import State, StateSpec, rnn_step
from leanse.models.tasnet import (
    CumulativeLayerNorm,
    GlobalLayerNorm,
    LearnedDecoder,
    LearnedEncoder,
    apply_masks,
    cumulative_normalize,
    make_mask_activation,
    make_norm,
    squeeze_single_source,
)


# --------------------------------------------------------------------------------------------
# Segmentation and overlap-add (002 Sec. 2.2.1)


def chunk_padding(length: int, chunk_size: int) -> tuple[int, int]:
    """Zeros ``(front, end)`` to add before chunking ``length`` frames (DPRNN reference code)."""
    hop = chunk_size // 2
    rest = chunk_size - (hop + length % chunk_size) % chunk_size
    return hop, rest + hop


# Both work on two interleaved sets of back-to-back chunks (those starting at 0, 2T, 4T, ... and
# those starting at T, 3T, ...), which needs only reshapes and pads -- unlike Tensor.unfold and
# F.fold, this exports to ONNX with a dynamic length. It needs ``Lp = T + k * 2T`` frames, which
# is what the padding of :func:`segment` gives (``S = 2k`` chunks).


def frames_to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``[B, C, Lp]`` -> ``[B, C, 2T, S]``: every ``2T``-frame window at hop ``T``, no padding."""
    batch, channels, hop = x.shape[0], x.shape[1], chunk_size // 2
    from_zero = x[..., :-hop].reshape(batch, channels, -1, chunk_size)  # [B, C, k, 2T]
    from_hop = x[..., hop:].reshape(batch, channels, -1, chunk_size)  # [B, C, k, 2T]
    chunks = torch.stack([from_zero, from_hop], dim=3).flatten(2, 3)  # [B, C, S, 2T]
    return chunks.transpose(-1, -2).contiguous()  # [B, C, 2T, S]


def chunks_to_frames(chunks: torch.Tensor) -> torch.Tensor:
    """``[B, C, 2T, S]`` -> ``[B, C, Lp]``: overlap-add (sums the two copies of every frame)."""
    batch, channels, chunk_size = chunks.shape[:3]
    hop = chunk_size // 2
    pairs = chunks.transpose(-1, -2).reshape(batch, channels, -1, 2, chunk_size)  # [B,C,k,2,2T]
    from_zero = pairs[:, :, :, 0].reshape(batch, channels, -1)  # [B, C, k*2T]
    from_hop = pairs[:, :, :, 1].reshape(batch, channels, -1)  # [B, C, k*2T]
    return nn.functional.pad(from_zero, (0, hop)) + nn.functional.pad(from_hop, (hop, 0))


def segment(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Segmentation stage: ``[B, C, L]`` frames -> ``[B, C, 2T, S]`` overlapping chunks."""
    front, end = chunk_padding(x.shape[-1], chunk_size)
    return frames_to_chunks(nn.functional.pad(x, (front, end)), chunk_size)


def overlap_add(chunks: torch.Tensor, length: int) -> torch.Tensor:
    """Overlap-add stage: ``[B, C, 2T, S]`` -> ``[B, C, length]`` (undoes :func:`segment`)."""
    front, _ = chunk_padding(length, chunks.shape[2])
    return chunks_to_frames(chunks)[..., front : front + length]


# --------------------------------------------------------------------------------------------
# Normalisation of chunked tensors


class ChunkedCumulativeLayerNorm(CumulativeLayerNorm):
    """Causal LN for chunked tensors: statistics over channels and every element up to time t.

    Element ``(p, s)`` of a ``[B, C, 2T, S]`` tensor holds frame ``t = s*T + p`` (in padded
    frames). The per-frame sums are overlap-added onto the time axis, accumulated, and read back
    at each element's own frame, so an element never sees statistics of a later frame -- unlike a
    cLN along the chunk axis alone, which would mix the far end of a chunk into its start.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, 2T, S]`` -> ``[B, C, 2T, S]``."""
        channels = x.shape[1]
        stats = torch.cat(
            [
                x.sum(1, keepdim=True),
                x.pow(2).sum(1, keepdim=True),
                torch.full_like(x[:, :1], float(channels)),
            ],
            dim=1,
        )  # [B, 3, 2T, S]: sum, sum of squares, count at each element
        per_frame = chunks_to_frames(stats)  # [B, 3, Lp]
        running = frames_to_chunks(per_frame.cumsum(-1), x.shape[2])  # [B, 3, 2T, S]
        y = cumulative_normalize(x, running[:, 0:1], running[:, 1:2], running[:, 2:3], self.eps)
        return torch.addcmul(self.bias[:, None, None], y, self.weight[:, None, None])


    def stream_step(self, tail: torch.Tensor, head: torch.Tensor, state: State,
                    tail_valid: bool = True) -> tuple[torch.Tensor, torch.Tensor, State]:
        """The two chunk copies of ``T`` new frames (``[B', C, T]`` each: the end of the open
        chunk and the start of the next) -> both normalised; running sums carried in ``state``.
        ``tail_valid=False``: only the head exists (the frames before the signal)."""
        sum_, sum_sq, count = state  # [B', 1, 1], [B', 1, 1], [1]
        channels = tail.shape[1]
        weight = 1.0 if tail_valid else 0.0
        frame_sum = (weight * tail.sum(1, keepdim=True) + head.sum(1, keepdim=True)).cumsum(-1)
        frame_sq = (weight * tail.pow(2).sum(1, keepdim=True)
                    + head.pow(2).sum(1, keepdim=True)).cumsum(-1)  # [B', 1, T]
        per_frame = channels * (2 if tail_valid else 1)
        steps = torch.arange(1, tail.shape[-1] + 1, device=tail.device, dtype=tail.dtype)
        sums, sums_sq, counts = sum_ + frame_sum, sum_sq + frame_sq, count + per_frame * steps
        scale, shift = self.weight[:, None], self.bias[:, None]
        tail = torch.addcmul(shift, cumulative_normalize(tail, sums, sums_sq, counts, self.eps), scale)
        head = torch.addcmul(shift, cumulative_normalize(head, sums, sums_sq, counts, self.eps), scale)
        return tail, head, (sums[..., -1:], sums_sq[..., -1:], counts[-1:].reshape(1))

    def state_specs(self, prefix: str, batch: int) -> list[StateSpec]:
        return [StateSpec(f"{prefix}_sum", (batch, 1, 1)), StateSpec(f"{prefix}_sum_sq", (batch, 1, 1)),
                StateSpec(f"{prefix}_count", (1,))]


def make_dual_path_norm(channels: int, causal: bool) -> nn.Module:
    """The "LN" after each RNN: ``GroupNorm(1, C)`` (gLN) or its causal chunked cLN."""
    return ChunkedCumulativeLayerNorm(channels) if causal else GlobalLayerNorm(channels)


# --------------------------------------------------------------------------------------------
# Blocks


class SequenceRNN(nn.Module):
    """``(B)LSTM -> Linear`` back to the input size: ``[N, steps, C]`` -> ``[N, steps, C]``.

    The "RNN + FC" of one DPRNN path (002 Sec. 2.2.1): ``LSTM(C, H)`` then ``Linear(dirs*H, C)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = True) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Linear(hidden_size * (2 if bidirectional else 1), input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(x)  # [N, steps, dirs*H]
        return self.proj(hidden)  # [N, steps, C]


class DualPathBlock(nn.Module):
    """One DPRNN block: intra-chunk RNN (002 eq. 2) then inter-chunk RNN (002 eq. 3).

    Each path is RNN -> Linear -> norm -> residual add. Works on ``[B, C, 2T, S]``.
    """

    def __init__(self, feature_size: int, hidden_size: int, causal: bool = False) -> None:
        super().__init__()
        self.intra_rnn = SequenceRNN(feature_size, hidden_size, bidirectional=not causal)
        self.intra_norm = make_dual_path_norm(feature_size, causal)
        self.inter_rnn = SequenceRNN(feature_size, hidden_size, bidirectional=not causal)
        self.inter_norm = make_dual_path_norm(feature_size, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, 2T, S]`` -> ``[B, C, 2T, S]``."""
        batch, channels, chunk_size, num_chunks = x.shape
        # Intra-chunk: each chunk is one sequence of 2T frames.
        seq = x.permute(0, 3, 2, 1).reshape(batch * num_chunks, chunk_size, channels)
        seq = self.intra_rnn(seq).view(batch, num_chunks, chunk_size, channels)
        x = x + self.intra_norm(seq.permute(0, 3, 2, 1))  # Q, [B, C, 2T, S]
        # Inter-chunk: each chunk position is one sequence of S chunks.
        seq = x.permute(0, 2, 3, 1).reshape(batch * chunk_size, num_chunks, channels)
        seq = self.inter_rnn(seq).view(batch, chunk_size, num_chunks, channels)
        return x + self.inter_norm(seq.permute(0, 3, 1, 2))  # [B, C, 2T, S]


    # -- chunk-wise streaming (causal blocks) ------------------------------------------------

    def state_specs(self, prefix: str, batch: int, half_chunk: int) -> list[StateSpec]:
        hidden = self.intra_rnn.rnn.hidden_size
        return ([StateSpec(f"{prefix}_intra_h", (1, batch, hidden)),
                 StateSpec(f"{prefix}_intra_c", (1, batch, hidden))]
                + self.intra_norm.state_specs(f"{prefix}_intra_norm", batch)
                + [StateSpec(f"{prefix}_inter_h", (1, batch * 2 * half_chunk, hidden)),
                   StateSpec(f"{prefix}_inter_c", (1, batch * 2 * half_chunk, hidden))]
                + self.inter_norm.state_specs(f"{prefix}_inter_norm", batch))

    def stream_step(self, tail: torch.Tensor, head: torch.Tensor, state: State,
                    tail_valid: bool = True) -> tuple[torch.Tensor, torch.Tensor, State]:
        """``T`` new frames as their two chunk copies (``[B', C, T]``: positions ``T..2T-1`` of
        the open chunk ``j`` and ``0..T-1`` of chunk ``j+1``) -> the block's output for both.

        State: the intra-chunk LSTM after the first half of the open chunk, the inter-chunk LSTM
        of every chunk position (``2T`` sequences, each advanced by one chunk per step: the
        heads by chunk ``j+1``, the tails by chunk ``j``), and the two norms' running sums.
        """
        batch, channels, half = tail.shape
        intra_state, intra_norm, inter_state, inter_norm = state[0:2], state[2:5], state[5:7], state[7:10]
        # Intra-chunk RNN: the tail continues the open chunk; the head starts a fresh one.
        tail_seq = self._rnn_sequence(self.intra_rnn, tail.transpose(1, 2), intra_state)[0]
        zeros = tuple(torch.zeros_like(t) for t in intra_state)
        head_seq, new_intra = self._rnn_sequence(self.intra_rnn, head.transpose(1, 2), zeros)
        tail_n, head_n, intra_norm = self.intra_norm.stream_step(
            tail_seq.transpose(1, 2), head_seq.transpose(1, 2), intra_norm, tail_valid)
        tail, head = tail + tail_n, head + head_n
        # Inter-chunk RNN: one chunk step for each of the 2T positions (heads 0..T-1, tails T..)
        positions = torch.cat([head, tail], dim=2).transpose(1, 2).reshape(batch * 2 * half, channels)
        out, new_inter = rnn_step(self.inter_rnn.rnn, positions, inter_state)
        out = self.inter_rnn.proj(out).view(batch, 2 * half, channels).transpose(1, 2)  # [B', C, 2T]
        if not tail_valid:  # no tail sequence has started yet: keep their zero state
            keep = torch.arange(2 * half, device=tail.device).repeat(batch) < half  # head rows
            new_inter = tuple(torch.where(keep[None, :, None], n, o)
                              for n, o in zip(new_inter, inter_state))
        tail_n, head_n, inter_norm = self.inter_norm.stream_step(
            out[:, :, half:], out[:, :, :half], inter_norm, tail_valid)
        return tail + tail_n, head + head_n, (*new_intra, *intra_norm, *new_inter, *inter_norm)

    @staticmethod
    def _rnn_sequence(path: "SequenceRNN", seq: torch.Tensor, state: State
                      ) -> tuple[torch.Tensor, State]:
        """``[B', T, C]`` through a path's LSTM from ``state`` and its projection."""
        hidden, (h, c) = path.rnn(seq, (state[0], state[1]))
        return path.proj(hidden), (h, c)


class DualPathMaskHead(nn.Module):
    """``PReLU -> Conv2d(C, S_src*N, 1)`` on the chunks, overlap-add, mask nonlinearity.

    The DPRNN-TasNet output layer (FIDELITY 002: "the mask is PReLU then one Conv2d ...,
    overlap-add, ReLU").
    """

    def __init__(
        self, feature_size: int, n_filters: int, num_sources: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.n_filters = n_filters
        self.num_sources = num_sources
        self.prelu = nn.PReLU()
        self.conv = nn.Conv2d(feature_size, num_sources * n_filters, 1)
        self.activation = make_mask_activation(activation)

    def stream_step(self, tail: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """The two copies of ``T`` frames ``[B', C, T]`` -> their masks ``[B', S_src, N, T]``
        (overlap-add of the copies, then the nonlinearity, as offline)."""
        scores = self.conv(self.prelu(torch.stack([tail, head], dim=-1)))  # [B', S*N, T, 2]
        masks = self.activation(scores[..., 0] + scores[..., 1])
        return masks.view(masks.shape[0], self.num_sources, self.n_filters, -1)

    def forward(self, chunks: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``[B, C, 2T, S]`` -> ``[B, S_src, N, F]`` masks."""
        scores = self.conv(self.prelu(chunks))  # [B, S_src*N, 2T, S]
        masks = self.activation(overlap_add(scores, num_frames))  # [B, S_src*N, F]
        return masks.view(masks.shape[0], self.num_sources, self.n_filters, num_frames)


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 2 or chunk_size % 2:
        raise ConfigError(
            f"chunk_size must be an even number >= 2 (chunks overlap by half), not {chunk_size}"
        )


# --------------------------------------------------------------------------------------------
# Model


def dual_path_streaming_reason(model: EnhancementModel) -> str | None:
    """Why a dual-path TasNet cannot stream chunk-wise, or None."""
    if not model.causal:
        return (f"{model.registered_name} with causal=False is not causal (bidirectional RNNs and"
                " global norms look ahead, up to the whole signal), so it cannot stream; train it"
                " with causal: true")
    if model.kernel_size != 2 * model.stride:
        return f"streaming needs kernel_size == 2 * stride, not {model.kernel_size}/{model.stride}"
    return None


def dual_path_stream(blocks: list[nn.Module], tail: torch.Tensor, head: torch.Tensor, state: State,
                     tail_valid: bool = True) -> tuple[torch.Tensor, torch.Tensor, State]:
    """Both chunk copies of ``T`` new frames through the blocks (10 state tensors per block)."""
    new_state: list[torch.Tensor] = []
    for index, block in enumerate(blocks):
        tail, head, block_state = block.stream_step(tail, head, state[10 * index : 10 * index + 10],
                                                    tail_valid)
        new_state.extend(block_state)
    return tail, head, tuple(new_state)


def dual_path_preroll(blocks: list[nn.Module], state: State, shape: tuple[int, int],
                      half: int) -> list[torch.Tensor]:
    """The block states after the ``T`` zero frames that pad the first chunk offline."""
    zeros = torch.zeros(*shape, half, device=state[0].device)  # [B', C, T]
    with torch.no_grad():
        _, _, new_state = dual_path_stream(blocks, zeros, zeros, state, tail_valid=False)
    return list(new_state)


class DualPathStreaming:
    """Chunk-wise streaming shared by DPRNN-TasNet and GroupComm: one hop of ``T = chunk_size / 2``
    frames per step; state = encoder buffer, the norm's running sums, each block's states, the
    decoder's overlap-add tail. ``_block_rows(batch)`` is how many sequences each block carries.

    Separation (``num_sources = S > 1``) streams like enhancement: the separator runs once per
    hop and only the decoder runs per source, so ``step`` returns ``[B, S, hop]`` (the layout of
    the offline ``[B, S, T]``) and the decoder's overlap-add tail is ``[B, S, kernel - stride]``;
    an enhancement model keeps ``[B, hop]`` and ``[B, kernel - stride]``.
    """

    def not_streamable_reason(self) -> str | None:
        return dual_path_streaming_reason(self)

    @property
    def hop(self) -> int:
        return self.chunk_size // 2 * self.stride

    @property
    def latency_samples(self) -> int:
        return self.kernel_size - self.stride

    @property
    def lookahead(self) -> int:
        return self.kernel_size - self.stride

    def _block_rows(self, batch: int) -> int:
        return batch

    def state_specs(self, batch: int = 1) -> list[StateSpec]:
        self._require_streamable()
        half, width = self.chunk_size // 2, self.kernel_size - self.stride
        specs = [StateSpec("encoder_buffer", (batch, width))]
        specs += self.encoder_norm.state_specs("encoder_norm", batch)
        for index, block in enumerate(self.blocks):
            specs += block.state_specs(f"block{index + 1}", self._block_rows(batch), half)
        sources = () if self.num_sources == 1 else (self.num_sources,)
        return specs + [StateSpec("decoder_ola", (batch, *sources, width))]

    def _decode_step(self, masked: torch.Tensor, ola: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked frames ``[B, S, N, n]`` and the decoder's overlap-add tail -> ``[B, hop]`` (one
        source) or ``[B, S, hop]``, and the next tail (shape as ``decoder_ola``). The sources are
        decoded as a batch of ``B * S`` signals, as offline."""
        if self.num_sources == 1:
            return self.decoder.step(masked[:, 0], ola)
        batch, sources = masked.shape[:2]
        y_hop, ola = self.decoder.step(masked.flatten(0, 1), ola.flatten(0, 1))  # [B*S, hop], [B*S, width]
        return y_hop.unflatten(0, (batch, sources)), ola.unflatten(0, (batch, sources))


@register_model("dprnn_tasnet")
class DPRNNTasNet(DualPathStreaming, EnhancementModel):
    """DPRNN-TasNet, the baseline row of 002 Table 2 (2,616,065 parameters, 22.1G MACs / 4 s).

    encoder -> gLN -> bottleneck ``Conv1d(N, C, 1)`` -> segmentation -> ``num_layers`` DPRNN
    blocks -> mask head -> overlap-add -> ReLU masks x encoder output -> decoder.

    Args:
        num_sources: 2 for 002's two-speaker separation, 1 for enhancement.
        n_filters: encoder filters ``N``.
        bottleneck: feature size ``C`` inside DPRNN (``H_i`` in 002 Table 1).
        hidden_size: LSTM units per direction (``H_o``).
        num_layers: DPRNN blocks (``L``).
        chunk_size: chunk length ``2T`` in frames (hop ``T``).
        kernel_size, stride: encoder window and hop in samples (2 ms / 1 ms at 16 kHz).
        mask_activation: ``"relu"`` (002) or ``"sigmoid"``.
        causal: unidirectional RNNs and cumulative norms (see module docstring).
        sample_rate: 16000 in 002.
    """

    def __init__(
        self,
        num_sources: int = 2,
        n_filters: int = 128,
        bottleneck: int = 64,
        hidden_size: int = 128,
        num_layers: int = 6,
        chunk_size: int = 100,
        kernel_size: int = 32,
        stride: int = 16,
        mask_activation: str = "relu",
        causal: bool = False,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(sample_rate)
        check_chunk_size(chunk_size)
        self.num_sources = num_sources
        self.n_filters = n_filters
        self.bottleneck = bottleneck
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.chunk_size = chunk_size
        self.kernel_size = kernel_size
        self.stride = stride
        self.mask_activation = mask_activation
        self.causal = causal

        self.encoder = LearnedEncoder(n_filters, kernel_size, stride)
        self.encoder_norm = make_norm(n_filters, causal)
        self.bottleneck_conv = nn.Conv1d(n_filters, bottleneck, 1, bias=False)
        self.blocks = nn.ModuleList(
            DualPathBlock(bottleneck, hidden_size, causal) for _ in range(num_layers)
        )
        self.mask_head = DualPathMaskHead(bottleneck, n_filters, num_sources, mask_activation)
        self.decoder = LearnedDecoder(n_filters, kernel_size, stride)

    # -- chunk-wise streaming (causal): DualPathStreaming, plus the pre-rolled state and the step ---

    def init_state(self, batch: int = 1) -> State:
        """Not zeros: offline, the first chunk starts with ``T`` zero frames of padding, which
        the blocks process (biases make their outputs non-zero); the initial state is the state
        after them (:func:`dual_path_preroll`)."""
        state = list(super().init_state(batch))
        blocks = list(self.blocks)
        state[4 : 4 + 10 * len(blocks)] = dual_path_preroll(
            blocks, tuple(state[4 : 4 + 10 * len(blocks)]), (batch, self.bottleneck), self.chunk_size // 2)
        return tuple(state)

    def _step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        mix_rep, encoder_buffer = self.encoder.step(x_hop, state[0])  # [B, N, T]
        normed, encoder_norm = self.encoder_norm.step(mix_rep, state[1:4])
        features = self.bottleneck_conv(normed)  # [B, C, T]
        tail, head, block_states = dual_path_stream(list(self.blocks), features, features,
                                                    state[4:-1])
        masks = self.mask_head.stream_step(tail, head)  # [B, S_src, N, T]
        y_hop, ola = self._decode_step(apply_masks(mix_rep, masks), state[-1])  # [B, (S_src,) hop]
        return y_hop, (encoder_buffer, *encoder_norm, *block_states, ola)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, T]`` (one source) or ``[B, S_src, T]``."""
        mix_rep = self.encoder(wav)  # [B, N, F]
        features = self.bottleneck_conv(self.encoder_norm(mix_rep))  # [B, C, F]
        chunks = segment(features, self.chunk_size)  # [B, C, 2T, S]
        for block in self.blocks:
            chunks = block(chunks)
        masks = self.mask_head(chunks, mix_rep.shape[-1])  # [B, S_src, N, F]
        estimates = self.decoder(apply_masks(mix_rep, masks), wav.shape[-1])  # [B, S_src, T]
        return squeeze_single_source(estimates, self.num_sources)


register_preset(
    "dprnn-tasnet",
    dict(name="dprnn_tasnet", num_sources=2, n_filters=128, bottleneck=64, hidden_size=128,
         num_layers=6, chunk_size=100, kernel_size=32, stride=16, sample_rate=16000),
)
# Trains in minutes on two CPU cores: 8 kHz, 4 ms window, small DPRNN, enhancement.
register_preset(
    "tiny-dprnn-tasnet",
    dict(name="dprnn_tasnet", num_sources=1, n_filters=64, bottleneck=32, hidden_size=32,
         num_layers=2, chunk_size=50, kernel_size=32, stride=16, sample_rate=8000),
)

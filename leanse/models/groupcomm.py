"""GroupComm-DPRNN-TasNet: ultra-lightweight separation by group communication (paper 002).

002 Sec. 2.1 eq. (1): a feature vector ``h`` in R^N, ``N = K*M``, is split into ``K`` groups
``g^i`` in R^M; a module ``F`` models the inter-group dependencies, and one small module is then
*shared* by all groups (no concatenation back to N, unlike F-LSTM).

002 Sec. 2.2.2 / Fig. 1(B), one GroupComm-DPRNN block on the chunked tensor (``[N, 2T, S]``):

1. *Grouping*: every frame ``t`` in R^N is split into ``K`` vectors ``z^i`` in R^M.
2. *Inter-group RNN*: a BLSTM runs across the K groups of each frame (sequence length K), then an
   FC layer back to M, a norm and a residual add (``w^i``).
3. *Shared DPRNN*: one DPRNN block (intra- then inter-chunk path, :class:`DualPathBlock`) with
   ``M``-dimensional input is applied to each of the K groups with the same weights.

Model (002 Sec. 3.2): encoder -> norm -> (no bottleneck: the encoder output is split into groups
directly) -> L GroupComm-DPRNN blocks -> mask -> decoder.

What the text leaves open, or contradicts, and what we do:

* Counts beat text (FIDELITY 002): 002 Sec. 3.2 says "different mask estimation layers for
  different groups", but only *one* ``PReLU -> Conv2d(M, S_src*M, 1)`` shared by all groups
  reproduces Table 2's parameters. The groups' mask outputs are concatenated back to N per source
  (group ``k`` owns filters ``k*M .. k*M+M-1``).
* ``H_i = M`` (every LSTM reads and writes M features) and ``H_o`` is the hidden size per
  direction, ``2M`` in every row of Table 2 -- both from Table 2.
* Normalisation: each "LN" is ``GroupNorm(1, M)`` applied to each group separately (groups are
  folded into the batch, as for the shared DPRNN). The papers do not say; norms cost no MACs and
  2M parameters either way, so the counts cannot tell.
* The inter-group BLSTM runs over groups, not time, so it stays bidirectional in causal mode.
* Chunking, framing, encoder norm: as DPRNN-TasNet (see :mod:`leanse.models.dprnn`).
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.errors import ConfigError
from leanse.models.base import EnhancementModel, register_model, register_preset
from leanse.models.dprnn import (
    DualPathBlock,
    DualPathMaskHead,
    DualPathStreaming,
    SequenceRNN,
    check_chunk_size,
    make_dual_path_norm,
    segment,
)
from leanse.models.streaming import State, StateSpec
from leanse.models.tasnet import (
    LearnedDecoder,
    LearnedEncoder,
    apply_masks,
    make_norm,
    squeeze_single_source,
)


class GroupCommunication(nn.Module):
    """Inter-group module ``F`` of 002 eq. (1): BLSTM across groups -> FC -> norm -> residual.

    Works on ``[B, K, M, 2T, S]``; the sequence the BLSTM reads is the K groups of one frame.
    """

    def __init__(self, group_size: int, hidden_size: int, causal: bool = False) -> None:
        super().__init__()
        # Across groups, not time: bidirectional is causal-safe.
        self.rnn = SequenceRNN(group_size, hidden_size, bidirectional=True)
        self.norm = make_dual_path_norm(group_size, causal)

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """``[B, K, M, 2T, S]`` -> ``[B, K, M, 2T, S]``."""
        batch, num_groups, group_size, chunk_size, num_chunks = groups.shape
        seq = groups.permute(0, 3, 4, 1, 2).reshape(-1, num_groups, group_size)  # [B*2T*S, K, M]
        seq = self.rnn(seq).view(batch, chunk_size, num_chunks, num_groups, group_size)
        seq = seq.permute(0, 3, 4, 1, 2).reshape(-1, group_size, chunk_size, num_chunks)
        normed = self.norm(seq)  # [B*K, M, 2T, S], each group normalised on its own
        return groups + normed.view_as(groups)

    def _across_groups(self, x: torch.Tensor, num_groups: int) -> torch.Tensor:
        """``[B*K, M, T]`` -> the BLSTM + FC across the K groups of each frame, same shape."""
        batch_groups, group_size, frames = x.shape
        batch = batch_groups // num_groups
        seq = x.view(batch, num_groups, group_size, frames).permute(0, 3, 1, 2)  # [B, T, K, M]
        seq = self.rnn(seq.reshape(-1, num_groups, group_size))  # [B*T, K, M]
        seq = seq.view(batch, frames, num_groups, group_size).permute(0, 2, 3, 1)
        return seq.reshape(batch_groups, group_size, frames)

    def stream_step(self, tail: torch.Tensor, head: torch.Tensor, num_groups: int, state: State,
                    tail_valid: bool = True) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Both chunk copies ``[B*K, M, T]`` of ``T`` new frames; the norm's sums in ``state``."""
        tail_n, head_n, state = self.norm.stream_step(
            self._across_groups(tail, num_groups), self._across_groups(head, num_groups), state,
            tail_valid)
        return tail + tail_n, head + head_n, state


class GroupCommBlock(nn.Module):
    """One GroupComm-DPRNN block (002 Fig. 1B): group communication, then a shared DPRNN block."""

    def __init__(self, group_size: int, hidden_size: int, causal: bool = False) -> None:
        super().__init__()
        self.group_comm = GroupCommunication(group_size, hidden_size, causal)
        self.dual_path = DualPathBlock(group_size, hidden_size, causal)

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """``[B, K, M, 2T, S]`` -> ``[B, K, M, 2T, S]``."""
        groups = self.group_comm(groups)
        batch, num_groups = groups.shape[:2]
        # The same DPRNN weights for every group: fold the groups into the batch.
        shared = self.dual_path(groups.flatten(0, 1))  # [B*K, M, 2T, S]
        return shared.view(batch, num_groups, *shared.shape[1:])

    def state_specs(self, prefix: str, batch_groups: int, half_chunk: int) -> list[StateSpec]:
        return (self.group_comm.norm.state_specs(f"{prefix}_group_norm", batch_groups)
                + self.dual_path.state_specs(prefix, batch_groups, half_chunk))

    def stream_step(self, tail: torch.Tensor, head: torch.Tensor, num_groups: int, state: State,
                    tail_valid: bool = True) -> tuple[torch.Tensor, torch.Tensor, State]:
        tail, head, comm = self.group_comm.stream_step(tail, head, num_groups, state[:3], tail_valid)
        tail, head, dual = self.dual_path.stream_step(tail, head, state[3:], tail_valid)
        return tail, head, (*comm, *dual)


@register_model("groupcomm_dprnn_tasnet")
class GroupCommDPRNNTasNet(DualPathStreaming, EnhancementModel):
    """GroupComm-DPRNN-TasNet, the GroupComm rows of 002 Table 2.

    Args:
        num_sources: 2 for 002's two-speaker separation, 1 for enhancement.
        n_filters: encoder filters ``N`` (128 or 256).
        num_groups: ``K``; the group size is ``M = N / K``.
        hidden_size: LSTM units per direction ``H_o`` (``2M`` in Table 2).
        num_layers: GroupComm-DPRNN blocks ``L``.
        chunk_size: chunk length ``2T`` in frames.
        kernel_size, stride: encoder window and hop in samples (2 ms / 1 ms at 16 kHz).
        mask_activation: ``"relu"`` (002) or ``"sigmoid"``.
        causal: unidirectional time RNNs and cumulative norms (see :mod:`leanse.models.dprnn`).
        sample_rate: 16000 in 002.
    """

    def __init__(
        self,
        num_sources: int = 2,
        n_filters: int = 128,
        num_groups: int = 16,
        hidden_size: int = 16,
        num_layers: int = 6,
        chunk_size: int = 100,
        kernel_size: int = 32,
        stride: int = 16,
        mask_activation: str = "relu",
        causal: bool = False,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(sample_rate)
        if num_groups < 1 or n_filters % num_groups:
            raise ConfigError(
                f"n_filters ({n_filters}) must split into num_groups ({num_groups}) equal groups"
            )
        check_chunk_size(chunk_size)
        self.num_sources = num_sources
        self.n_filters = n_filters
        self.num_groups = num_groups
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.chunk_size = chunk_size
        self.kernel_size = kernel_size
        self.stride = stride
        self.mask_activation = mask_activation
        self.causal = causal
        self.group_size = n_filters // num_groups  # M

        self.encoder = LearnedEncoder(n_filters, kernel_size, stride)
        self.encoder_norm = make_norm(n_filters, causal)
        self.blocks = nn.ModuleList(
            GroupCommBlock(self.group_size, hidden_size, causal) for _ in range(num_layers)
        )
        # One mask layer for all groups: M features -> M mask values per source and group.
        self.mask_head = DualPathMaskHead(
            self.group_size, self.group_size, num_sources, mask_activation
        )
        self.decoder = LearnedDecoder(n_filters, kernel_size, stride)

    # -- chunk-wise streaming (causal), as DPRNN-TasNet (DualPathStreaming) ----------------------

    def _block_rows(self, batch: int) -> int:
        return batch * self.num_groups  # each group is its own sequence in the blocks

    def _blocks_stream(self, tail: torch.Tensor, head: torch.Tensor, state: State,
                       tail_valid: bool = True) -> tuple[torch.Tensor, torch.Tensor, State]:
        new_state: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            tail, head, block_state = block.stream_step(
                tail, head, self.num_groups, state[13 * index : 13 * index + 13], tail_valid)
            new_state.extend(block_state)
        return tail, head, tuple(new_state)

    def init_state(self, batch: int = 1) -> State:
        """After the ``T`` zero frames that pad the first chunk (see DPRNN-TasNet)."""
        state = list(super().init_state(batch))
        count = 13 * len(self.blocks)
        zeros = torch.zeros(batch * self.num_groups, self.group_size, self.chunk_size // 2)
        with torch.no_grad():
            _, _, blocks = self._blocks_stream(zeros, zeros, tuple(state[4 : 4 + count]), False)
        state[4 : 4 + count] = blocks
        return tuple(state)

    def _step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        batch = x_hop.shape[0]
        mix_rep, encoder_buffer = self.encoder.step(x_hop, state[0])  # [B, N, T]
        normed, encoder_norm = self.encoder_norm.step(mix_rep, state[1:4])
        frames = mix_rep.shape[-1]
        groups = normed.reshape(batch * self.num_groups, self.group_size, frames)  # [B*K, M, T]
        tail, head, blocks = self._blocks_stream(groups, groups, state[4:-1])
        masks = self.mask_head.stream_step(tail, head)  # [B*K, 1, M, T]
        masks = masks.view(batch, self.num_groups, self.num_sources, self.group_size, frames)
        masks = masks.transpose(1, 2).reshape(batch, self.num_sources, self.n_filters, frames)
        y_hop, ola = self._decode_step(apply_masks(mix_rep, masks), state[-1])  # [B, (S_src,) hop]
        return y_hop, (encoder_buffer, *encoder_norm, *blocks, ola)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, T]`` (one source) or ``[B, S_src, T]``."""
        batch = wav.shape[0]
        mix_rep = self.encoder(wav)  # [B, N, F]
        num_frames = mix_rep.shape[-1]
        chunks = segment(self.encoder_norm(mix_rep), self.chunk_size)  # [B, N, 2T, S]
        groups = chunks.view(batch, self.num_groups, self.group_size, *chunks.shape[2:])
        for block in self.blocks:
            groups = block(groups)  # [B, K, M, 2T, S]
        masks = self.mask_head(groups.flatten(0, 1), num_frames)  # [B*K, S_src, M, F]
        masks = masks.view(batch, self.num_groups, self.num_sources, self.group_size, num_frames)
        masks = masks.transpose(1, 2).reshape(batch, self.num_sources, self.n_filters, num_frames)
        estimates = self.decoder(apply_masks(mix_rep, masks), wav.shape[-1])  # [B, S_src, T]
        return squeeze_single_source(estimates, self.num_sources)


#: 002 Table 2, GroupComm rows: (K, N, L); M = N/K, H_i = M, H_o = 2M.
TABLE2_ROWS: list[tuple[int, int, int]] = [
    (2, 128, 4), (4, 128, 4), (8, 128, 4), (16, 128, 4), (16, 128, 6), (16, 256, 2),
    (16, 256, 4), (32, 128, 6), (32, 128, 10), (32, 256, 2), (32, 256, 4),
]

for _k, _n, _l in TABLE2_ROWS:
    register_preset(
        f"groupcomm-k{_k}-n{_n}-l{_l}",
        dict(name="groupcomm_dprnn_tasnet", num_sources=2, n_filters=_n, num_groups=_k,
             hidden_size=2 * _n // _k, num_layers=_l, chunk_size=100, kernel_size=32, stride=16,
             sample_rate=16000),
    )

# Trains in minutes on two CPU cores: 8 kHz, 4 ms window, K = 8 groups of 8, enhancement.
register_preset(
    "tiny-groupcomm",
    dict(name="groupcomm_dprnn_tasnet", num_sources=1, n_filters=64, num_groups=8, hidden_size=16,
         num_layers=2, chunk_size=50, kernel_size=32, stride=16, sample_rate=8000),
)

"""Model compression of paper 004 (Tan & Wang 2021): sparse regularisation (Sec. II-C),
per-tensor sensitivity analysis and iterative pruning (Sec. II-B), k-means weight sharing
(Sec. II-D), and the pipelines C1 / C2 of its Fig. 3 built on them.

Modules: ``regularizers`` (eqs. 7-9, 004's weight groups), ``sensitivity`` (Algorithms 1-3),
``pruning`` (masks, iterative pruning), ``quantization`` (k-means codebooks, Eq. 11 sizes),
``positions`` (Rice-coded sparse positions), ``packed`` (packed checkpoints), ``shrink`` (physical
removal of dead units), ``cost`` (nonzero / weight-only MACs), ``pipeline`` (``leanse compress``),
``report`` (the compression table and figures)."""

from leanse.compress.pruning import (
    IterationRecord,
    Pruner,
    iterative_prune,
    sparsity_report,
)
from leanse.compress.shrink import shrink_model
from leanse.compress.packed import read_packed_state, save_packed
from leanse.compress.positions import PositionCode, decode_positions, encode_positions
from leanse.compress.quantization import (
    PackedModel,
    QuantizedTensor,
    kmeans_codebook,
    quantize_model,
    eq11_bytes,
    quantize_tensor,
    size_mb,
)
from leanse.compress.regularizers import (
    DEFAULT_GROUPING,
    GROUPINGS,
    PrunableTensor,
    group_lasso_penalty,
    group_matrix,
    l1_penalty,
    prunable_tensors,
    sgl_proximal_step_,
    sparse_group_lasso,
)
from leanse.compress.sensitivity import (
    PAPER_RATIOS,
    chosen_ratios,
    format_table,
    make_pruning_schedule,
    pruning_sensitivity,
    quantization_sensitivity,
)

__all__ = [
    "IterationRecord", "Pruner", "iterative_prune", "sparsity_report",
    "PackedModel", "QuantizedTensor", "kmeans_codebook", "quantize_model",
    "quantize_tensor", "size_mb", "PrunableTensor", "group_lasso_penalty", "group_matrix",
    "l1_penalty", "prunable_tensors", "sgl_proximal_step_", "sparse_group_lasso",
    "PAPER_RATIOS", "chosen_ratios", "format_table", "make_pruning_schedule",
    "pruning_sensitivity", "quantization_sensitivity", "DEFAULT_GROUPING", "GROUPINGS",
    "eq11_bytes", "save_packed", "read_packed_state", "PositionCode", "encode_positions",
    "decode_positions", "shrink_model",
]

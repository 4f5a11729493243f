"""Per-tensor sensitivity analyses (004 Algorithms 1, 2 and 3; Sec. II-B and II-D).

Each tensor is pruned (or quantized) *alone* at increasing strength and the quality drop
``evaluate(unchanged model) - evaluate(modified model)`` is recorded; the tensor is then
restored. 004 measures an increase of the validation loss; here ``evaluate(model) -> float`` is
any higher-is-better score (negative validation loss, STOI, PESQ...), so the drop plays the
role of 004's ``I_U`` (Eq. (5)/(6)).

Choice rule (Algorithms 1/2, lines 5-11): the chosen ratio is the one *before* the first ratio
whose drop exceeds the tolerance, and 100 % if none does -- not "the largest ratio within
tolerance" over a non-monotone curve. Ratios are fractions of the tensor's remaining nonzero
weights (groups), as in the algorithms. Algorithm 3: double ``K`` from 1 until the drop is
below the tolerance or ``2K`` exceeds the number of nonzero weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from leanse.compress.pruning import Pruner, group_mask, magnitude_mask
from leanse.compress.quantization import quantize_tensor
from leanse.compress.regularizers import DEFAULT_GROUPING, PrunableTensor, prunable_tensors

__all__ = ["PAPER_RATIOS", "pruning_sensitivity", "quantization_sensitivity",
           "chosen_ratios", "format_table"]

#: 004 Algorithms 1 and 2: beta in {0 %, 5 %, ..., 95 %, 100 %}.
PAPER_RATIOS: tuple[float, ...] = tuple(i / 20 for i in range(21))

Table = dict[str, dict]


@torch.no_grad()
def pruning_sensitivity(model: nn.Module, evaluate: Callable[[nn.Module], float],
                        tolerance: float, ratios: Sequence[float] = PAPER_RATIOS,
                        structured: bool = False, by: str = DEFAULT_GROUPING,
                        tensors: list[PrunableTensor] | None = None) -> Table:
    """004 Algorithm 1 (``structured=False``) or 2 (``structured=True``).

    Returns ``{tensor name: {"ratios": [...], "drops": [...], "chosen": beta}}``; ratios after
    the first one beyond the tolerance are not evaluated (the algorithms break there). For RNNs
    in structured mode the removed units' biases are not zeroed here (per-tensor analysis);
    :meth:`Pruner.prune_groups` does that when pruning for real.
    """
    specs = prunable_tensors(model) if tensors is None else tensors
    base = float(evaluate(model))
    table: Table = {}
    for spec in specs:
        weight = spec.weight
        saved = weight.detach().clone()
        tried, drops = [], []
        chosen = 1.0
        previous = 0.0
        for ratio in ratios:
            mask = (group_mask(spec, ratio, None, by) if structured
                    else magnitude_mask(saved, ratio))
            weight.copy_(saved * mask)
            drop = base - float(evaluate(model))
            weight.copy_(saved)
            tried.append(float(ratio))
            drops.append(drop)
            if drop > tolerance:
                chosen = previous
                break
            previous = float(ratio)
        table[spec.name] = {"ratios": tried, "drops": drops, "chosen": chosen}
    return table


@torch.no_grad()
def quantization_sensitivity(model: nn.Module, evaluate: Callable[[nn.Module], float],
                             tolerance: float, max_bits: int = 8,
                             tensors: list[PrunableTensor] | None = None) -> Table:
    """004 Algorithm 3: per tensor, the fewest bits ``log2 K`` whose drop is below tolerance.

    Returns ``{name: {"bits": [...], "drops": [...], "chosen": bits}}``; capped at ``max_bits``
    (<= 8, the packed format's limit).
    """
    specs = prunable_tensors(model) if tensors is None else tensors
    base = float(evaluate(model))
    table: Table = {}
    for spec in specs:
        weight = spec.weight
        saved = weight.detach().clone()
        nonzero = int(torch.count_nonzero(saved))
        tried, drops = [], []
        chosen = max_bits
        for bits in range(0, max_bits + 1):
            q = quantize_tensor(saved, bits)
            weight.copy_(q.unpack().to(weight.dtype))
            drop = base - float(evaluate(model))
            weight.copy_(saved)
            tried.append(bits)
            drops.append(drop)
            if drop < tolerance or 2 ** (bits + 1) > nonzero:
                chosen = bits
                break
        table[spec.name] = {"bits": tried, "drops": drops, "chosen": chosen}
    return table


def chosen_ratios(table: Table) -> dict[str, float]:
    """``{name: chosen}`` from a sensitivity table (for ``Pruner.prune`` / ``quantize_model``)."""
    return {name: row["chosen"] for name, row in table.items()}


def format_table(table: Table) -> str:
    """A printable table: one line per tensor with its chosen value and the drops."""
    lines = []
    width = max((len(n) for n in table), default=4)
    for name, row in table.items():
        xs = row.get("ratios", row.get("bits", []))
        cells = " ".join(f"{x:g}:{d:+.4g}" for x, d in zip(xs, row["drops"]))
        lines.append(f"{name:<{width}}  chosen={row['chosen']:<5g} {cells}")
    return "\n".join(lines)


def make_pruning_schedule(evaluate: Callable[[nn.Module], float], tolerance: float,
                          structured: bool = False, ratios: Sequence[float] = PAPER_RATIOS,
                          by: str = DEFAULT_GROUPING,
                          ) -> Callable[[nn.Module, Pruner], dict[str, float]]:
    """A ``ratios`` callable for :func:`leanse.compress.pruning.iterative_prune` that reruns the
    sensitivity analysis before every pruning iteration (004 Sec. II-B). Pass the same ``by``
    to ``iterative_prune`` so that the analysis and the pruning use the same groups."""

    def schedule(model: nn.Module, pruner: Pruner) -> dict[str, float]:
        return chosen_ratios(pruning_sensitivity(model, evaluate, tolerance, ratios, structured,
                                                 by, tensors=pruner.tensors))

    return schedule

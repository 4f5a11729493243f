"""Magnitude pruning with persistent masks and iterative pruning (004 Sec. II-B); the physical
removal of what structured pruning killed is :func:`leanse.compress.shrink.shrink_model`.

Masks are our own boolean tensors, re-applied after every optimizer step (``Pruner.attach``
registers an optimizer step post-hook), instead of ``torch.nn.utils.prune``: that module
re-parametrises ``weight`` into ``weight_orig`` + ``weight_mask`` buffers and a forward
pre-hook, which changes ``state_dict`` keys (leanse checkpoints rebuild from config + plain
weights), doubles the stored weights (``model_bytes``), and fights with ``nn.LSTM``'s flat
weights. Pruned weights are exact zeros, so masks are recovered from a checkpoint with
:meth:`Pruner.from_zeros`.

Criteria (004 Algorithms 1 and 2): unstructured pruning removes the ``beta`` fraction of a
tensor's *nonzero* weights with the smallest ``|w|``; structured pruning removes the ``beta``
fraction of its nonzero groups with the smallest l1 norm. Ratios are therefore relative to what
is left, and iterating ``beta = 0.5`` gives sparsity 50 %, 75 %, ...
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from leanse.compress.regularizers import (
    DEFAULT_GROUPING,
    PrunableTensor,
    check_grouping,
    group_index,
    prunable_tensors,
)
from leanse.complexity import count_parameters

__all__ = [
    "Pruner",
    "IterationRecord",
    "iterative_prune",
    "sparsity_report",
]

Ratios = float | dict[str, float]


def _ratio(ratios: Ratios, name: str) -> float:
    if isinstance(ratios, dict):
        return float(ratios.get(name, 0.0))
    return float(ratios)


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, ratio: float, mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Mask that additionally removes ``ratio`` of the nonzero entries with the smallest ``|w|``
    (Algorithm 1, line 3). Ties at the threshold are broken by position (``topk`` order)."""
    alive = (weight != 0) if mask is None else (mask & (weight != 0))
    n_alive = int(alive.sum())
    k = int(round(ratio * n_alive))
    new = alive.clone()
    if k <= 0:
        return new
    scores = torch.where(alive, weight.abs(), torch.full_like(weight, float("inf")))
    drop = torch.topk(scores.reshape(-1), k, largest=False).indices
    new.view(-1)[drop] = False
    return new


@torch.no_grad()
def group_mask(spec: PrunableTensor, ratio: float, mask: torch.Tensor | None = None,
               by: str = DEFAULT_GROUPING) -> torch.Tensor:
    """Mask that additionally removes ``ratio`` of the nonzero groups with the smallest l1 norm
    (Algorithm 2, line 3)."""
    weight = spec.weight
    alive = (weight != 0) if mask is None else (mask & (weight != 0))
    index = group_index(spec, by)
    norms = (weight.abs() * alive).reshape(-1)[index].sum(dim=1)
    live_groups = norms > 0
    k = int(round(ratio * int(live_groups.sum())))
    new = alive.clone()
    if k <= 0:
        return new
    scores = torch.where(live_groups, norms, torch.full_like(norms, float("inf")))
    drop = torch.topk(scores, k, largest=False).indices
    new.view(-1)[index[drop].reshape(-1)] = False
    return new


class Pruner:
    """Persistent masks over a model's prunable tensors (and RNN biases of removed units).

    ``masks`` maps parameter names to boolean tensors; :meth:`apply` zeroes masked entries.
    """

    def __init__(self, model: nn.Module, tensors: list[PrunableTensor] | None = None) -> None:
        self.model = model
        self.tensors = prunable_tensors(model) if tensors is None else tensors
        self.params = dict(model.named_parameters())
        self.masks: dict[str, torch.Tensor] = {}

    @classmethod
    def from_zeros(cls, model: nn.Module) -> "Pruner":
        """Masks = the current zeros of every prunable tensor (e.g. after loading a checkpoint)."""
        pruner = cls(model)
        for spec in pruner.tensors:
            pruner.masks[spec.name] = spec.weight.detach() != 0
        return pruner

    def mask_of(self, spec: PrunableTensor) -> torch.Tensor:
        return self.masks.get(spec.name, torch.ones_like(spec.weight, dtype=torch.bool))

    @torch.no_grad()
    def prune(self, ratios: Ratios) -> int:
        """Unstructured: remove ``ratio`` of each tensor's remaining weights; returns #removed."""
        before = self.nonzeros()
        for spec in self.tensors:
            ratio = _ratio(ratios, spec.name)
            if ratio > 0:
                old = self.masks.get(spec.name)
                self.masks[spec.name] = magnitude_mask(spec.weight, ratio, old)
        self.apply()
        return before - self.nonzeros()

    @torch.no_grad()
    def prune_groups(self, ratios: Ratios, by: str = DEFAULT_GROUPING) -> int:
        """Structured: remove ``ratio`` of each tensor's remaining groups; returns #removed.

        For RNNs, a hidden unit whose rows are zero in both its ``weight_ih`` and ``weight_hh``
        also loses its biases, so that it outputs exactly 0 and can be removed
        (:func:`leanse.compress.shrink.shrink_model`); a unit with zero weights but live biases still produces a
        time-varying, input-independent output.
        """
        before = self.nonzeros()
        for spec in self.tensors:
            ratio = _ratio(ratios, spec.name)
            if ratio > 0:
                self.masks[spec.name] = group_mask(spec, ratio, self.masks.get(spec.name), by)
        self.apply()
        self._mask_dead_rnn_biases()
        return before - self.nonzeros()

    @torch.no_grad()
    def _mask_dead_rnn_biases(self) -> None:
        prefix_of = {id(m): n for n, m in self.model.named_modules()}
        for spec in self.tensors:
            if not spec.attr.startswith("weight_ih"):
                continue
            hh = getattr(spec.module, spec.attr.replace("weight_ih", "weight_hh"))
            gates = spec.gates
            ih_rows = spec.weight.reshape(gates, -1, spec.weight.shape[1])
            hh_rows = hh.reshape(gates, -1, hh.shape[1])
            dead = (ih_rows.abs().sum(dim=(0, 2)) == 0) & (hh_rows.abs().sum(dim=(0, 2)) == 0)
            if not bool(dead.any()):
                continue
            keep = (~dead).repeat(gates)
            prefix = prefix_of[id(spec.module)]
            for bias in spec.rnn_biases():
                name = f"{prefix}.{bias}" if prefix else bias
                old = self.masks.get(name, torch.ones_like(self.params[name], dtype=torch.bool))
                self.masks[name] = old & keep
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked entry (call after each optimizer step, or use :meth:`attach`)."""
        for name, mask in self.masks.items():
            self.params[name].mul_(mask)

    def attach(self, optimizer: torch.optim.Optimizer):
        """Re-apply the masks after every ``optimizer.step()``; returns the hook handle."""
        return optimizer.register_step_post_hook(lambda *_: self.apply())

    def nonzeros(self) -> int:
        return int(sum(int(torch.count_nonzero(s.weight.detach())) for s in self.tensors))

    def sparsity(self) -> float:
        """Fraction of zero weights over all prunable tensors."""
        total = sum(s.weight.numel() for s in self.tensors)
        return 1.0 - self.nonzeros() / max(total, 1)


def sparsity_report(model: nn.Module) -> dict:
    """``{"params", "nonzeros", "sparsity", "tensors": {name: {"numel", "nonzeros",
    "sparsity"}}}``; ``nonzeros`` counts every parameter, ``sparsity`` the prunable tensors."""
    tensors = {}
    for spec in prunable_tensors(model):
        numel = spec.weight.numel()
        nz = int(torch.count_nonzero(spec.weight.detach()))
        tensors[spec.name] = {"numel": numel, "nonzeros": nz, "sparsity": 1.0 - nz / max(numel, 1)}
    total = sum(t["numel"] for t in tensors.values())
    nonzero = sum(t["nonzeros"] for t in tensors.values())
    return {
        "params": count_parameters(model),
        "nonzeros": int(sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())),
        "sparsity": 1.0 - nonzero / max(total, 1),
        "tensors": tensors,
    }


@dataclass
class IterationRecord:
    """One pruning iteration: ratios used, weights removed, sparsity, score after fine-tuning."""

    iteration: int
    ratios: dict[str, float] | float
    removed: int
    sparsity: float
    score: float
    accepted: bool
    extra: dict = field(default_factory=dict)


def iterative_prune(model: nn.Module, evaluate: Callable[[nn.Module], float],
                    fine_tune: Callable[[nn.Module, Pruner], None],
                    ratios: Ratios | Callable[[nn.Module, Pruner], Ratios],
                    tolerance: float, max_iterations: int = 10,
                    target_sparsity: float | None = None, min_removed: float = 0.001,
                    structured: bool = False, pruner: Pruner | None = None,
                    by: str = DEFAULT_GROUPING,
                    ) -> tuple[Pruner, list[IterationRecord]]:
    """004 Sec. II-B: prune -> fine-tune -> evaluate, repeated.

    Stops when an iteration removes fewer than ``min_removed`` of the remaining weights ("the
    number of pruned weights becomes trivial"), when the score drops by more than ``tolerance``
    below the unpruned score ("a significant decrease in STOI or PESQ"; that iteration is undone
    and the previous model kept), at ``target_sparsity``, or after ``max_iterations``.

    Args:
        evaluate: ``evaluate(model) -> float``, higher is better (e.g. validation STOI).
        fine_tune: ``fine_tune(model, pruner)``; should train with ``pruner.attach(optimizer)``.
        ratios: a ratio, per-tensor ratios, or a callable giving them each iteration (e.g. a
            wrapper around :func:`leanse.compress.sensitivity.pruning_sensitivity`).
        structured: prune groups (Algorithm 2) instead of weights (Algorithm 1).
        by: the weight groups of structured pruning (004's columns / kernels by default; see
            :func:`leanse.compress.regularizers.group_matrix`).
    """
    check_grouping(by)
    pruner = pruner or Pruner.from_zeros(model)
    base = float(evaluate(model))
    history: list[IterationRecord] = []
    for it in range(1, max_iterations + 1):
        if target_sparsity is not None and pruner.sparsity() >= target_sparsity:
            break
        saved = (copy.deepcopy(model.state_dict()), {k: v.clone() for k, v in pruner.masks.items()})
        step = ratios(model, pruner) if callable(ratios) else ratios
        remaining = pruner.nonzeros()
        removed = pruner.prune_groups(step, by) if structured else pruner.prune(step)
        fine_tune(model, pruner)
        pruner.apply()
        score = float(evaluate(model))
        accepted = base - score <= tolerance
        history.append(IterationRecord(it, step, removed, pruner.sparsity(), score, accepted))
        if not accepted:
            model.load_state_dict(saved[0])
            pruner.masks = saved[1]
            break
        if removed < min_removed * max(remaining, 1):
            break
    return pruner, history

"""Magnitude pruning with persistent masks, iterative pruning, and unit removal (004 Sec. II-B).

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
    "remove_pruned_units",
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
        (:func:`remove_pruned_units`); a unit with zero weights but live biases still produces a
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


# --------------------------------------------------------------------------------------------
# Physical removal of pruned units (structured pruning -> a smaller dense model)
# --------------------------------------------------------------------------------------------

#: Elementwise modules that may sit between two Linear layers of a removable chain.
_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.GELU, nn.Identity,
                nn.Dropout)


def _shrink_linear(layer: nn.Linear, keep_out: torch.Tensor | None,
                   keep_in: torch.Tensor | None) -> nn.Linear:
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else None
    if keep_out is not None:
        w = w[keep_out]
        b = b[keep_out] if b is not None else None
    if keep_in is not None:
        w = w[:, keep_in]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


@torch.no_grad()
def _shrink_sequential(seq: nn.Sequential) -> int:
    """Remove dead hidden units between consecutive Linear layers of ``seq``; returns #units.

    A unit is dead if its outgoing column in the next Linear is zero (it feeds nothing), or its
    incoming row is zero: then it outputs the constant ``act(bias)``, folded exactly into the
    next layer's bias (``b_next += W_next[:, j] * act(b_j)``).
    """
    removed = 0
    items = list(seq)
    linear_at = [i for i, m in enumerate(items) if isinstance(m, nn.Linear)]
    for a, b in zip(linear_at, linear_at[1:]):
        between = items[a + 1:b]
        if not all(isinstance(m, _ELEMENTWISE) for m in between):
            continue
        first, second = items[a], items[b]
        row_dead = first.weight.abs().sum(dim=1) == 0
        col_dead = second.weight.abs().sum(dim=0) == 0
        dead = row_dead | col_dead
        if not bool(dead.any()):
            continue
        fold = row_dead & ~col_dead
        if bool(fold.any()):
            const = first.bias[fold] if first.bias is not None else torch.zeros(int(fold.sum()))
            was_training = [m.training for m in between]
            for m in between:
                m.eval()
                const = m(const)
            for m, t in zip(between, was_training):
                m.train(t)
            if second.bias is None:
                second.bias = nn.Parameter(torch.zeros(second.out_features))
            second.bias.add_(second.weight[:, fold] @ const)
        keep = ~dead
        items[a] = _shrink_linear(first, keep, None)
        items[b] = _shrink_linear(second, None, keep)
        removed += int(dead.sum())
    for i, m in enumerate(items):
        seq[i] = m
    return removed


class StackedLSTM(nn.Module):
    """Single-layer ``nn.LSTM``s in sequence, so layers may have different widths after unit
    removal; returns ``(output, None)`` like the first element of ``nn.LSTM``'s result."""

    def __init__(self, layers: list[nn.LSTM]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor):
        for layer in self.layers:
            x, _ = layer(x)
        return x, None


def _lstm_layers(lstm: nn.LSTM) -> list[dict[str, torch.Tensor]]:
    return [{k: getattr(lstm, f"{k}_l{i}").detach() for k in
             ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if hasattr(lstm, f"{k}_l{i}")}
            for i in range(lstm.num_layers)]


@torch.no_grad()
def _shrink_lstm(owner: nn.Module, rnn_attr: str, dense_attr: str) -> int:
    """Remove LSTM hidden units that output exactly 0 (all their gate rows and biases zero) from
    a unidirectional, batch-first, projection-free ``nn.LSTM`` followed by a Linear layer."""
    lstm: nn.LSTM = getattr(owner, rnn_attr)
    if lstm.bidirectional or lstm.proj_size or not lstm.batch_first:
        return 0
    layers = _lstm_layers(lstm)
    gates = 4
    keeps = []
    for p in layers:
        rows = lambda t: t.reshape(gates, -1, *t.shape[1:])  # noqa: E731
        dead = (rows(p["weight_ih"]).abs().sum(dim=(0, 2)) == 0) & \
               (rows(p["weight_hh"]).abs().sum(dim=(0, 2)) == 0)
        for key in ("bias_ih", "bias_hh"):
            if key in p:
                dead &= rows(p[key]).abs().sum(dim=0) == 0
        keeps.append(~dead)
    removed = int(sum(int((~k).sum()) for k in keeps))
    if removed == 0:
        return 0
    new_layers = []
    in_keep = None
    for p, keep in zip(layers, keeps):
        gate_keep = keep.repeat(gates)
        w_ih = p["weight_ih"][gate_keep]
        if in_keep is not None:
            w_ih = w_ih[:, in_keep]
        w_hh = p["weight_hh"][gate_keep][:, keep]
        layer = nn.LSTM(w_ih.shape[1], int(keep.sum()), batch_first=True, bias="bias_ih" in p)
        layer.weight_ih_l0.copy_(w_ih)
        layer.weight_hh_l0.copy_(w_hh)
        if "bias_ih" in p:
            layer.bias_ih_l0.copy_(p["bias_ih"][gate_keep])
            layer.bias_hh_l0.copy_(p["bias_hh"][gate_keep])
        new_layers.append(layer)
        in_keep = keep
    widths = {layer.hidden_size for layer in new_layers}
    if len(widths) == 1:  # uniform: stay a plain multi-layer nn.LSTM
        merged = nn.LSTM(new_layers[0].input_size, widths.pop(), num_layers=len(new_layers),
                         batch_first=True, bias=lstm.bias)
        for i, layer in enumerate(new_layers):
            for name, value in layer.named_parameters():
                getattr(merged, name.replace("_l0", f"_l{i}")).copy_(value)
        setattr(owner, rnn_attr, merged)
    else:
        setattr(owner, rnn_attr, StackedLSTM(new_layers))
    dense: nn.Linear = getattr(owner, dense_attr)
    setattr(owner, dense_attr, _shrink_linear(dense, None, in_keep))
    return removed


def remove_pruned_units(model: nn.Module) -> dict:
    """Physically remove dead units where the architecture allows; the model's function is
    unchanged (up to float rounding). Widths may end up different per layer, so the config may no
    longer rebuild the model: :func:`leanse.compress.shrink.shrink_model` (what ``leanse
    compress`` uses) keeps equal widths and a reloadable checkpoint, and handles GRU and
    bidirectional RNNs too.

    Handled: Linear -> elementwise -> Linear chains inside any ``nn.Sequential`` (FDNN), and
    ``rnn`` (``nn.LSTM``) -> ``dense`` (Linear) pairs as in ``lstm_map``. Other structures
    (convolutions with BatchNorm/skip concatenations in TCNN/GCRN, grouped LSTMs) keep their
    zeros. If every hidden layer ends with the same width, ``model.hidden_size`` is updated so
    that ``model.config`` rebuilds the shrunk architecture; otherwise ``config`` describes the
    original widths and the model must be kept as a whole (a recipe concern).

    Returns ``{"units_removed", "params_before", "params_after"}``.
    """
    before = count_parameters(model)
    removed = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            removed += _shrink_sequential(module)
    for module in list(model.modules()):
        if isinstance(getattr(module, "rnn", None), nn.LSTM) and \
                isinstance(getattr(module, "dense", None), nn.Linear):
            removed += _shrink_lstm(module, "rnn", "dense")
    _sync_hidden_size(model)
    return {"units_removed": removed, "params_before": before,
            "params_after": count_parameters(model)}


def _sync_hidden_size(model: nn.Module) -> None:
    if not hasattr(model, "hidden_size"):
        return
    rnn = getattr(model, "rnn", None)
    if isinstance(rnn, nn.LSTM):
        model.hidden_size = rnn.hidden_size
        return
    net = getattr(model, "net", None)
    if isinstance(net, nn.Sequential):
        hidden = [m.out_features for m in net if isinstance(m, nn.Linear)][:-1]
        if hidden and len(set(hidden)) == 1:
            model.hidden_size = hidden[0]

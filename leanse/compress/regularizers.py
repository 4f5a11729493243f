"""Prunable tensors, their weight groups, and the sparse regularisers of paper 004 (Sec. II-C).

Paper 004 (Tan & Wang 2021) numbers its method sections II-B (pruning), II-C (sparse
regularisation) and II-D (clustering-based quantization); Sec. III is the experimental setup.

*Prunable tensors* are the weight matrices/kernels of ``nn.Linear``, ``nn.Conv{1,2,3}d``,
``nn.ConvTranspose{1,2,3}d`` and the ``weight_ih/hh/hr`` matrices of ``nn.RNN/LSTM/GRU``. Biases,
normalisation and PReLU parameters are not (004 prunes "weights"; the choice is ours where the
paper is silent).

*Weight groups* follow 004 Sec. II-B by default (``by="paper"``): a group is one *column* of a
fully-connected or recurrent weight matrix, the gate matrices concatenated (LSTM ``[4H, I]``: a
column holds the ``4H`` weights that read one input unit), and one *kernel* of a (transposed)
convolution (the ``kh x kw`` matrix, or the length-``k`` vector in 1-D, joining one input to one
output channel). Other groupings stay available: ``by="output"`` gives one output neuron / output
channel / hidden unit (its rows in all gates: LSTM ``i, f, g, o``, GRU ``r, z, n``), and
``by="input"`` one input unit (for convolutions: all kernels reading one input channel). A hidden
unit whose columns are zero in every tensor that reads it feeds nothing and can be removed
physically (:func:`leanse.compress.shrink.shrink_model`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from leanse.errors import ConfigError

__all__ = [
    "DEFAULT_GROUPING",
    "GROUPINGS",
    "RegularizerConfig",
    "regularization",
    "PrunableTensor",
    "prunable_tensors",
    "group_index",
    "group_matrix",
    "l1_penalty",
    "group_lasso_penalty",
    "sparse_group_lasso",
    "sgl_proximal_step_",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
#: Weight groupings: 004's (columns / kernels, the default), output units, input units.
GROUPINGS = ("paper", "output", "input")
DEFAULT_GROUPING = "paper"


@dataclass(frozen=True)
class PrunableTensor:
    """One prunable weight tensor and how it splits into groups.

    Attributes:
        name: parameter name in ``model.named_parameters()``.
        module: the owning module.
        attr: attribute name of the parameter on ``module``.
        kind: ``"linear"``, ``"conv"``, ``"conv_transpose"`` or ``"rnn"``.
        out_dim: dimension indexing output units (1 for transposed convolutions, else 0).
        gates: gate blocks stacked along ``out_dim`` (LSTM 4, GRU 3, otherwise 1).
    """

    name: str
    module: nn.Module
    attr: str
    kind: str
    out_dim: int = 0
    gates: int = 1

    @property
    def weight(self) -> nn.Parameter:
        return getattr(self.module, self.attr)

    def rnn_biases(self) -> list[str]:
        """Names (on ``module``) of the biases belonging to this RNN input/hidden matrix's units."""
        if self.kind != "rnn" or self.attr.startswith("weight_hr") or not self.module.bias:
            return []
        suffix = self.attr.split("_", 2)[2]  # "l0", "l1_reverse"
        return [f"bias_ih_{suffix}", f"bias_hh_{suffix}"]


def prunable_tensors(model: nn.Module) -> list[PrunableTensor]:
    """All prunable weight tensors of ``model`` in ``named_modules`` order (shared ones once)."""
    found: list[PrunableTensor] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        entries: list[tuple[str, str, int, int]] = []
        if isinstance(module, nn.Linear):
            entries = [("weight", "linear", 0, 1)]
        elif isinstance(module, _CONV):
            entries = [("weight", "conv", 0, 1)]
        elif isinstance(module, _CONV_T):
            entries = [("weight", "conv_transpose", 1, 1)]
        elif isinstance(module, nn.RNNBase):
            gates = _GATES[module.mode]
            for attr, _ in module.named_parameters(recurse=False):
                if attr.startswith("weight_hr"):
                    entries.append((attr, "rnn", 0, 1))
                elif attr.startswith("weight_"):
                    entries.append((attr, "rnn", 0, gates))
        for attr, kind, out_dim, gates in entries:
            param = getattr(module, attr, None)
            if not isinstance(param, nn.Parameter) or id(param) in seen:
                continue
            seen.add(id(param))
            found.append(PrunableTensor(prefix + attr, module, attr, kind, out_dim, gates))
    return found


def check_grouping(by: str) -> str:
    if by not in GROUPINGS:
        raise ConfigError(f"group by one of {', '.join(GROUPINGS)}, not {by!r}")
    return by


def group_matrix(weight: torch.Tensor, spec: PrunableTensor, by: str = DEFAULT_GROUPING
                 ) -> torch.Tensor:
    """View ``weight`` as ``[num_groups, group_size]`` (a differentiable reshape).

    ``by="paper"`` (004 Sec. II-B): one row per column of an FC / RNN matrix (the gates
    concatenated), one per kernel of a convolution; ``by="output"``: one row per output unit
    (RNN: the unit's rows of every gate); ``by="input"``: one row per input unit.
    """
    check_grouping(by)
    if by == "paper":
        if spec.kind in ("conv", "conv_transpose"):
            return weight.reshape(weight.shape[0] * weight.shape[1], -1)  # [C_out*C_in, k...]
        return weight.t()  # [I, 4H]: column j = every gate's weights reading input j
    if by == "output":
        w = weight.movedim(spec.out_dim, 0)
        if spec.gates > 1:
            units = w.shape[0] // spec.gates
            return w.reshape(spec.gates, units, -1).transpose(0, 1).reshape(units, -1)
        return w.reshape(w.shape[0], -1)
    if by == "input":
        in_dim = 1 - spec.out_dim
        w = weight.movedim(in_dim, 0)
        return w.reshape(w.shape[0], -1)
    raise AssertionError(by)  # unreachable: check_grouping


def group_index(spec: PrunableTensor, by: str = DEFAULT_GROUPING) -> torch.Tensor:
    """Flat element indices of each group, ``[num_groups, group_size]`` (for building masks)."""
    weight = spec.weight
    flat = torch.arange(weight.numel(), device=weight.device).reshape(weight.shape)
    return group_matrix(flat, spec, by)


def _specs(model: nn.Module, groups: list[PrunableTensor] | None) -> list[PrunableTensor]:
    return prunable_tensors(model) if groups is None else groups


def l1_penalty(model: nn.Module, weight: float,
               tensors: list[PrunableTensor] | None = None) -> torch.Tensor:
    """004 Eq. (7): ``R_l1 = lambda_1 / n(W) * sum_{w in W} |w|``.

    ``W`` is the set of nonzero weights of the prunable tensors; ``n(W)`` is counted without
    gradient (it is a normaliser, not a function of the weights to differentiate).
    """
    specs = _specs(model, tensors)
    if not specs:
        return torch.zeros(())
    total = sum(spec.weight.abs().sum() for spec in specs)
    count = sum(int(torch.count_nonzero(spec.weight.detach())) for spec in specs)
    return weight * total / max(count, 1)


def group_lasso_penalty(model: nn.Module, weight: float,
                        groups: list[PrunableTensor] | None = None,
                        by: str = DEFAULT_GROUPING) -> torch.Tensor:
    """004 Eq. (8): ``R_l21 = lambda_2 / n(G) * sum_{g in G} sqrt(p_g) * ||g||_2``.

    ``G`` is every weight group of the given tensors (pruned ones included, as the equation
    says "all weight groups"); ``p_g`` is the group's number of weights. At ``g = 0`` the
    gradient is the zero subgradient (``torch.linalg.vector_norm``'s convention).
    """
    specs = _specs(model, groups)
    if not specs:
        return torch.zeros(())
    total = torch.zeros(())
    count = 0
    for spec in specs:
        rows = group_matrix(spec.weight, spec, by)
        total = total + math.sqrt(rows.shape[1]) * torch.linalg.vector_norm(rows, dim=1).sum()
        count += rows.shape[0]
    return weight * total / max(count, 1)


def sparse_group_lasso(model: nn.Module, groups: list[PrunableTensor] | None,
                       lambda_l1: float, lambda_group: float,
                       by: str = DEFAULT_GROUPING) -> torch.Tensor:
    """004 Eq. (9): ``R_SGL = R_l1 + R_l21`` (Eq. (7) plus Eq. (8)); the loss is ``L + R_SGL``."""
    return (l1_penalty(model, lambda_l1, groups)
            + group_lasso_penalty(model, lambda_group, groups, by))


@torch.no_grad()
def sgl_proximal_step_(model: nn.Module, groups: list[PrunableTensor] | None, step: float,
                       lambda_l1: float, lambda_group: float, by: str = DEFAULT_GROUPING) -> None:
    """Proximal operator of Eq. (9) for a gradient step of size ``step``, in place.

    004 trains with the penalty added to the loss (plain (sub)gradients, which shrink groups but
    rarely make them exactly zero); this optional proximal step (Simon et al. 2013, [38]) does
    produce exact zeros: elementwise soft-thresholding by ``step * lambda_1 / n(W)``, then
    group shrinkage ``g <- max(0, 1 - t_g / ||g||) g`` with
    ``t_g = step * lambda_2 sqrt(p_g) / n(G)``.
    Call it after ``optimizer.step()`` with ``step`` = the learning rate.
    """
    specs = _specs(model, groups)
    n_w = max(sum(int(torch.count_nonzero(s.weight)) for s in specs), 1)
    n_g = max(sum(group_matrix(s.weight, s, by).shape[0] for s in specs), 1)
    for spec in specs:
        w = spec.weight
        w.copy_(torch.sign(w) * torch.clamp(w.abs() - step * lambda_l1 / n_w, min=0.0))
        index = group_index(spec, by)
        rows = w.reshape(-1)[index]
        threshold = step * lambda_group * math.sqrt(rows.shape[1]) / n_g
        norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        scale = torch.clamp(1.0 - threshold / norms.clamp_min(1e-30), min=0.0)
        w.view(-1)[index.reshape(-1)] = (rows * scale).reshape(-1)


@dataclass
class RegularizerConfig:
    """``train.regularizer`` of a recipe: the sparse penalty added to the task's loss.

    ``kind``: ``l1`` (Eq. (7), 004's C1) or ``sgl`` (Eq. (9), 004's C2); ``weight``: lambda_1;
    ``group_weight``: lambda_2 (``sgl`` only); ``grouping``: the weight groups of Eq. (8);
    ``decay``: lambda_1 and lambda_2 are multiplied by this after every pruning iteration (004
    Sec. III-C: "decay by 10 %", i.e. 0.9), which ``leanse compress`` applies.
    """

    kind: str = "l1"
    weight: float = 0.1
    group_weight: float = 0.0
    grouping: str = DEFAULT_GROUPING
    decay: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in ("l1", "sgl"):
            raise ConfigError(f"train.regularizer.kind: expected l1 or sgl, got {self.kind!r}")
        for name in ("weight", "group_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"train.regularizer.{name}: a number >= 0, not {value!r}")
        if not 0 < self.decay <= 1:
            raise ConfigError(f"train.regularizer.decay: in (0, 1], not {self.decay!r}")
        check_grouping(self.grouping)

    def scaled(self, iterations: int) -> "RegularizerConfig":
        """The lambdas after ``iterations`` pruning iterations."""
        factor = self.decay ** iterations
        return RegularizerConfig(self.kind, self.weight * factor, self.group_weight * factor,
                                 self.grouping, self.decay)


def regularization(model: nn.Module, config: RegularizerConfig) -> torch.Tensor:
    """The penalty ``config`` asks for on ``model``'s prunable tensors (Eq. (7) or (9))."""
    if config.kind == "l1":
        return l1_penalty(model, config.weight)
    return sparse_group_lasso(model, None, config.weight, config.group_weight, config.grouping)

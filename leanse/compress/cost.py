"""Sparse-aware cost: MACs of the *nonzero* weights next to the dense count (004 Table III).

004 Table III counts the multiply-accumulates a compressed model still has to do when zero
weights are skipped. Here ``nonzero = dense - skipped``, where ``dense`` is
:func:`leanse.complexity.count_macs` (the ``paper`` convention by default) and ``skipped`` is,
for every prunable weight tensor, its number of zeros times the number of times each weight is
used in the forward pass, measured with forward hooks:

* ``nn.Linear``: once per input row (``x.numel() / in_features``);
* ``nn.Conv*d``: once per output position (batch x output spatial size);
* ``nn.ConvTranspose*d``: once per *output* position (thop's formula, which the dense count uses);
* ``nn.RNN/LSTM/GRU``: once per time step and sequence, per direction (``weight_ih/hh/hr``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leanse.complexity import count_macs
from leanse.compress.regularizers import prunable_tensors
from leanse.errors import ConfigError

__all__ = ["sparse_macs", "weight_macs"]


def _noise(model: nn.Module, seconds: float) -> torch.Tensor:
    """Batch-1 seeded noise of ``seconds`` at the model's rate (the input count_macs uses too)."""
    rate = getattr(model, "sample_rate", None)
    if rate is None:
        raise ConfigError(f"{type(model).__name__} has no sample_rate; 'seconds' means nothing to it")
    samples = int(round(float(seconds) * int(rate)))
    return torch.randn(1, samples, generator=torch.Generator().manual_seed(0))


def _uses(module: nn.Module, args: tuple, output: Any) -> int:
    """How many times each weight of ``module`` multiplies something in this call."""
    x = args[0]
    if isinstance(module, nn.Linear):
        return x.numel() // module.in_features
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        spatial = x.shape[2:] if x.dim() == module.weight.dim() else x.shape[1:]
        batch = x.shape[0] if x.dim() == module.weight.dim() else 1
        return batch * math.prod(spatial)
    if isinstance(module, nn.modules.conv._ConvNd):
        out = output
        batched = out.dim() == module.weight.dim()
        return (out.shape[0] if batched else 1) * math.prod(out.shape[2:] if batched else out.shape[1:])
    if isinstance(module, nn.RNNBase):
        if isinstance(x, nn.utils.rnn.PackedSequence):
            return int(x.batch_sizes.sum())
        if x.dim() == 2:
            return x.shape[0]
        return x.shape[0] * x.shape[1]  # batch x time, either layout
    return 0


@torch.no_grad()
def sparse_macs(model: nn.Module, seconds: float, convention: str = "paper",
                **forward_kwargs: Any) -> dict[str, int | float]:
    """``{"dense", "nonzero", "fraction"}`` MACs of one forward pass over ``seconds`` of audio;
    ``fraction = nonzero / dense`` (004 Table III's "percent")."""
    dense = count_macs(model, seconds, convention, **forward_kwargs)
    zeros: dict[int, int] = {}
    for spec in prunable_tensors(model):
        zeros[id(spec.module)] = zeros.get(id(spec.module), 0) + int((spec.weight == 0).sum())
    uses = _weight_uses_per_module(model, {key for key, n in zeros.items() if n}, seconds, **forward_kwargs)
    skipped = sum(zeros[key] * count for key, count in uses.items())
    nonzero = max(int(dense) - int(skipped), 0)
    return {"dense": int(dense), "nonzero": nonzero, "fraction": nonzero / max(int(dense), 1)}


def _weight_uses_per_module(model: nn.Module, module_ids: set[int], seconds: float,
                            **forward_kwargs: Any) -> dict[int, int]:
    """``{id(module): uses of each of its weights}`` over one eval-mode forward pass on ``seconds``
    of noise, for the modules in ``module_ids`` (forward hooks, removed afterwards)."""
    uses: dict[int, int] = {}
    handles = []
    for module in model.modules():
        if id(module) in module_ids:
            def hook(mod, args, output, key=id(module)):
                uses[key] = uses.get(key, 0) + _weight_uses(mod, args, output)
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(_noise(model, seconds), **forward_kwargs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return uses


def _weight_uses(module: nn.Module, args: tuple, output: Any) -> int:
    """Multiply-accumulates per weight in thop's conv formulas: a transposed convolution counts
    ``output positions x C_in x k`` like a convolution over its zero-stuffed input."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        batched = output.dim() == module.weight.dim()
        positions = math.prod(output.shape[2:] if batched else output.shape[1:])
        batch = output.shape[0] if batched else 1
        # thop: out.numel() * C_in / groups * k = (batch * positions) * weight.numel()
        return batch * positions
    return _uses(module, args, output)


@torch.no_grad()
def weight_macs(model: nn.Module, seconds: float, nonzero: bool = False) -> int:
    """MACs of the prunable weight tensors only (no biases, normalisations, activations), one
    forward pass over ``seconds``; ``nonzero`` counts only the nonzero weights (004 Table III).

    For Linear and Conv layers this is thop's count without its BatchNorm / PReLU terms, as 004's
    published TCNN figure needs (see :mod:`leanse.models.compression_baselines`); RNN layers
    count ``weight_ih`` and ``weight_hh`` once per step (thop adds biases and gate products).
    """
    per_module: dict[int, int] = {}
    for spec in prunable_tensors(model):
        weight = spec.weight.detach()
        n = int((weight != 0).sum()) if nonzero else weight.numel()
        per_module[id(spec.module)] = per_module.get(id(spec.module), 0) + n
    counts = _weight_uses_per_module(model, set(per_module), seconds)
    return int(sum(per_module[key] * uses for key, uses in counts.items()))

"""Physical removal of dead units after structured pruning, keeping the model rebuildable.

A hidden unit can go when the model's function does not depend on it:

* **unread**: every weight that reads its output is zero -- its column in the layer's own
  recurrent matrix ``weight_hh`` (every direction) and in whatever consumes the layer (the next
  layer's ``weight_ih``, or the output ``Linear``). This is what 004's column groups (Sec. II-B)
  produce: a zero column is a unit nobody listens to.
* **silent**: all its incoming rows (every gate of ``weight_ih`` and ``weight_hh``) and its biases
  are zero, so it outputs exactly 0 (LSTM: ``c = 0, h = 0``; GRU: ``h = h_prev / 2 = 0``); and for a
  Linear -> elementwise -> Linear chain, a unit with a zero row outputs the constant ``act(b)``,
  folded exactly into the next layer's bias (``leanse.compress.pruning._shrink_sequential``).

Removal deletes the unit from every tensor together (its rows in all gates and directions, its
columns in the recurrent and consuming matrices, its biases). Every layer of a model loses the
*same* number of units (the fewest any layer can spare), so that the single ``hidden_size`` of the
model's config still describes it and the shrunk checkpoint reloads with
:func:`leanse.checkpoint.load_checkpoint`. Supported: models with ``rnn`` (``nn.LSTM`` /
``nn.GRU``, any number of layers, uni- or bidirectional, batch-first) feeding ``dense``
(``nn.Linear``) -- the mask RNNs of 000/001 and 004's LSTM -- and ``net`` Linear chains (004's
FDNN). Convolutional chains (TCNN, GCRN, DPRNN) are not shrunk here; their zero kernels stay
zeros (the packed file and the nonzero MAC count still see them).
"""

from __future__ import annotations

import torch
from torch import nn

from leanse.complexity import count_parameters

__all__ = ["shrink_model", "dead_rnn_units"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _weight(rnn: nn.RNNBase, name: str, layer: int, direction: int) -> torch.Tensor:
    return getattr(rnn, f"{name}_l{layer}{'_reverse' if direction else ''}").detach()


@torch.no_grad()
def dead_rnn_units(rnn: nn.RNNBase, consumer: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, a ``[H]`` bool: units that are unread or silent in every direction.

    ``consumer``: the weight matrix that reads the last layer's output (``[out, D * H]``).
    """
    gates, hidden = _GATES[rnn.mode], rnn.hidden_size
    dirs = 2 if rnn.bidirectional else 1
    dead = []
    for layer in range(rnn.num_layers):
        reader = (consumer if layer == rnn.num_layers - 1 else None)
        unit_dead = torch.ones(hidden, dtype=torch.bool)
        for d in range(dirs):
            hh = _weight(rnn, "weight_hh", layer, d)  # [G*H, H]
            ih = _weight(rnn, "weight_ih", layer, d)  # [G*H, I]
            unread = hh.abs().sum(dim=0) == 0
            readers = [reader] if reader is not None else [
                _weight(rnn, "weight_ih", layer + 1, d2) for d2 in range(dirs)]
            for w in readers:
                unread &= w[:, d * hidden:(d + 1) * hidden].abs().sum(dim=0) == 0
            silent = (ih.reshape(gates, hidden, -1).abs().sum(dim=(0, 2)) == 0) & \
                     (hh.reshape(gates, hidden, -1).abs().sum(dim=(0, 2)) == 0)
            if rnn.bias:
                for b in ("bias_ih", "bias_hh"):
                    silent &= _weight(rnn, b, layer, d).reshape(gates, hidden).abs().sum(0) == 0
            unit_dead &= unread | silent
        dead.append(unit_dead)
    return dead


@torch.no_grad()
def _shrink_rnn(owner: nn.Module) -> int:
    rnn: nn.RNNBase = owner.rnn
    dense: nn.Linear = owner.dense
    if rnn.proj_size if hasattr(rnn, "proj_size") else False:
        return 0
    dead = dead_rnn_units(rnn, dense.weight.detach())
    spare = min(min(int(d.sum()) for d in dead), rnn.hidden_size - 1)  # keep a unit: valid shapes
    if spare == 0:
        return 0
    keeps = []
    for d in dead:  # the first `spare` dead units of each layer go
        keep = torch.ones_like(d)
        keep[d.nonzero().flatten()[:spare]] = False
        keeps.append(keep)
    gates, hidden = _GATES[rnn.mode], rnn.hidden_size
    dirs = 2 if rnn.bidirectional else 1
    new = type(rnn)(rnn.input_size, hidden - spare, num_layers=rnn.num_layers, bias=rnn.bias,
                    batch_first=rnn.batch_first, bidirectional=rnn.bidirectional,
                    dropout=rnn.dropout)
    for layer, keep in enumerate(keeps):
        rows = keep.repeat(gates)  # gate-major rows: g * H + j
        cols_in = None if layer == 0 else keeps[layer - 1].repeat(dirs)
        for d in range(dirs):
            sfx = f"_l{layer}{'_reverse' if d else ''}"
            ih = getattr(rnn, "weight_ih" + sfx)[rows]
            getattr(new, "weight_ih" + sfx).copy_(ih if cols_in is None else ih[:, cols_in])
            getattr(new, "weight_hh" + sfx).copy_(getattr(rnn, "weight_hh" + sfx)[rows][:, keep])
            if rnn.bias:
                for b in ("bias_ih", "bias_hh"):
                    getattr(new, b + sfx).copy_(getattr(rnn, b + sfx)[rows])
    last = keeps[-1].repeat(dirs)
    shrunk = nn.Linear(int(last.sum()), dense.out_features, bias=dense.bias is not None)
    shrunk.weight.copy_(dense.weight[:, last])
    if dense.bias is not None:
        shrunk.bias.copy_(dense.bias)
    owner.rnn = new
    owner.dense = shrunk
    return spare * rnn.num_layers


@torch.no_grad()
def _shrink_linear_chain(owner: nn.Module) -> int:
    """Equal-width removal in an ``nn.Sequential`` of Linear -> elementwise -> Linear ... layers."""
    from leanse.compress.pruning import _ELEMENTWISE

    seq: nn.Sequential = owner.net
    linears = [m for m in seq if isinstance(m, nn.Linear)]
    if len(linears) < 2 or not all(isinstance(m, (nn.Linear, *_ELEMENTWISE)) for m in seq):
        return 0
    # dead per hidden layer: unread (zero column in the next layer) or a zero row (its constant
    # act(bias) is folded into the next bias); every layer loses the same number of units
    deads = [(first.weight.abs().sum(dim=1) == 0) | (second.weight.abs().sum(dim=0) == 0)
             for first, second in zip(linears, linears[1:])]
    spare = min(min(int(d.sum()) for d in deads), len(deads[0]) - 1)  # keep a unit: valid shapes
    if spare == 0:
        return 0
    return _shrink_chain_select(seq, linears, deads, spare)


@torch.no_grad()
def _shrink_chain_select(seq: nn.Sequential, linears: list[nn.Linear], deads: list[torch.Tensor],
                         spare: int) -> int:
    from leanse.compress.pruning import _shrink_linear

    items = list(seq)
    index = {id(m): i for i, m in enumerate(items)}
    new_layers = list(linears)
    for layer, dead in enumerate(deads):
        drop = dead.nonzero().flatten()[:spare]
        keep = torch.ones_like(dead)
        keep[drop] = False
        first, second = new_layers[layer], new_layers[layer + 1]
        row_dead = (first.weight.abs().sum(dim=1) == 0) & ~keep
        col_dead = second.weight.abs().sum(dim=0) == 0
        fold = row_dead & ~col_dead
        if bool(fold.any()):
            between = items[index[id(linears[layer])] + 1:index[id(linears[layer + 1])]]
            const = first.bias[fold] if first.bias is not None else torch.zeros(int(fold.sum()))
            for m in between:  # elementwise activations (no state; eval for Dropout)
                const = m.eval()(const)
            if second.bias is None:
                second.bias = nn.Parameter(torch.zeros(second.out_features))
            second.bias.add_(second.weight[:, fold] @ const)
        new_layers[layer] = _shrink_linear(first, keep, None)
        new_layers[layer + 1] = _shrink_linear(second, None, keep)
    for old, new in zip(linears, new_layers):
        seq[index[id(old)]] = new
    return spare * len(deads)


def shrink_model(model: nn.Module) -> dict:
    """Remove dead units in place where the architecture allows (see the module docstring).

    Returns ``{"units_removed", "params_before", "params_after", "reloadable", "handled"}``;
    ``reloadable`` says that ``build_model(model.config)`` has the shrunk shapes.
    """
    before = count_parameters(model)
    removed = 0
    handled = []
    if isinstance(getattr(model, "rnn", None), nn.RNNBase) and \
            isinstance(getattr(model, "dense", None), nn.Linear) and hasattr(model, "hidden_size"):
        removed += _shrink_rnn(model)
        model.hidden_size = model.rnn.hidden_size
        handled.append("rnn")
    elif isinstance(getattr(model, "net", None), nn.Sequential) and hasattr(model, "hidden_size"):
        removed += _shrink_linear_chain(model)
        widths = [m.out_features for m in model.net if isinstance(m, nn.Linear)][:-1]
        if widths:
            model.hidden_size = widths[0]
        handled.append("linear chain")
    reloadable = True
    if removed and hasattr(model, "config"):
        from leanse.models import build_model

        rebuilt = build_model(model.config)
        mine = {k: v.shape for k, v in model.state_dict().items()}
        theirs = {k: v.shape for k, v in rebuilt.state_dict().items()}
        reloadable = mine == theirs
    return {"units_removed": removed, "params_before": before,
            "params_after": count_parameters(model), "reloadable": reloadable,
            "handled": handled}

"""Physical removal of dead units and channels after structured pruning, keeping the model
rebuildable (004 Sec. II-B: structured pruning "removes whole units", so the model gets smaller
and faster, not just sparser).

A hidden unit / channel can go when the model's function does not depend on it:

* **unread**: every weight that reads it is zero -- for an RNN unit, its column in the layer's
  own recurrent matrix ``weight_hh`` (every direction) and in whatever consumes the layer (the
  next layer's ``weight_ih``, or the output ``Linear``); for a convolution channel, its kernels
  in every convolution that reads it (the next layer *and* a decoder's skip concatenation). This
  is what 004's column / kernel groups (Sec. II-B) produce: a zero column is a unit nobody
  listens to.
* **silent / constant**: an RNN unit with all its incoming rows (every gate of ``weight_ih`` and
  ``weight_hh``) and biases zero outputs exactly 0 (LSTM: ``c = 0, h = 0``; GRU:
  ``h = h_prev / 2 = 0``); a Linear -> elementwise -> Linear unit with a zero row outputs the
  constant ``act(b)``, folded into the next bias; a TCNN residual block channel whose depthwise
  kernel is zero outputs the constant ``BN(PReLU(b))``, folded into the 1x1 output convolution's
  bias (exact: a 1x1 convolution has no padding that would see the constant differently).
  Constants are *not* folded through padded or transposed convolutions (their borders see the
  constant a different number of times), so there a channel must be unread.

Removal deletes the unit from every tensor together: its rows in all gates and directions or
its output kernels, biases, BatchNorm statistics and per-channel PReLU slopes, and its columns
in every reader. Where one config entry sets several widths (``hidden_size`` of all RNN layers,
TCNN's ``tcm_hidden`` of every residual block, TCNN's ``encoder_channels[k]`` that also sets the
mirrored decoder layer's output, GCRN's ``decoder_channels[k]`` of both decoders) each of them
loses the *same* number (the fewest any can spare), so the config still describes the model and
the shrunk checkpoint reloads with :func:`leanse.checkpoint.load_checkpoint`. Shrinking is for
inference: BatchNorm is taken in eval mode (running statistics) when constants are folded.

Supported:

* ``rnn`` (``nn.LSTM`` / ``nn.GRU``, any layers, uni- or bidirectional) feeding ``dense``
  (``nn.Linear``): the mask RNNs of 000/001 and 004's LSTM;
* ``net`` Linear chains (004's FDNN);
* TCNN (004 Sec. III-B3): encoder channels with their skip readers and mirrored decoder layers,
  the residual stream of the temporal convolution module (the last encoder layer's channels: a
  channel goes only if no block and no decoder input reads it, and then it leaves every block's
  output rows too), and the hidden channels of every residual block;
* GCRN (004 Sec. III-B4): encoder blocks 1-4 (conv and gate together, with both decoders' skip
  readers) and decoder blocks 1-4 of both decoders. **Not** the last encoder block: its channels
  x 4 bins are the grouped LSTM's input *and* hidden size, reshaped back to channels after it,
  so a channel is tied to LSTM units across the interleaving -- left whole;
* sparse ensembles (000/001): each specialist and the gate, as the models they are;
* DPRNN-TasNet and GroupComm (002): the hidden units of every ``LSTM -> Linear`` path
  (intra-chunk, inter-chunk, group communication). **Not** the bottleneck / encoder filters:
  they are normalised by global layer norms whose statistics run over all channels, so removing
  one changes every other channel's output.

* **Not** BLOOM-Net / ResNet-TasNet (003): every separator block's hidden channels pass through
  a global (or cumulative) layer norm whose statistics run over all channels, as DPRNN's
  bottleneck does; C2 on them prunes and quantizes but removes nothing.

Convolutional chains elsewhere keep their zeros (the packed file and the nonzero MAC count of
:mod:`leanse.compress.cost` still see them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from leanse.complexity import count_parameters

__all__ = ["shrink_model", "dead_rnn_units"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_CONV_T = nn.modules.conv._ConvTransposeNd
_CONV = nn.modules.conv._ConvNd
_NORM = nn.modules.batchnorm._BatchNorm


def _weight(rnn: nn.RNNBase, name: str, layer: int, direction: int) -> torch.Tensor:
    return getattr(rnn, f"{name}_l{layer}{'_reverse' if direction else ''}").detach()


# --------------------------------------------------------------------------------------------
# RNN units
# --------------------------------------------------------------------------------------------


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


def _rnn_spare(rnn: nn.RNNBase, consumer: nn.Linear) -> tuple[int, list[torch.Tensor]]:
    """How many units every layer of ``rnn`` can lose, and its per-layer dead masks."""
    if getattr(rnn, "proj_size", 0):
        return 0, []
    dead = dead_rnn_units(rnn, consumer.weight.detach())
    return min(min(int(d.sum()) for d in dead), rnn.hidden_size - 1), dead  # keep a unit


@torch.no_grad()
def _cut_rnn(rnn: nn.RNNBase, consumer: nn.Linear, dead: list[torch.Tensor], spare: int
             ) -> tuple[nn.RNNBase, nn.Linear]:
    """A copy of ``rnn`` without the first ``spare`` dead units of each layer, and its reader."""
    keeps = []
    for d in dead:
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
    reader = nn.Linear(int(last.sum()), consumer.out_features, bias=consumer.bias is not None)
    reader.weight.copy_(consumer.weight[:, last])
    if consumer.bias is not None:
        reader.bias.copy_(consumer.bias)
    return new, reader


def _shrink_rnn_pairs(pairs: list[tuple[nn.Module, str, str]]) -> int:
    """Equal-width unit removal over ``(owner, rnn_attr, reader_attr)`` pairs that share one
    ``hidden_size``; returns the units removed (per layer and pair, summed)."""
    plans = [_rnn_spare(getattr(o, r), getattr(o, c)) for o, r, c in pairs]
    spare = min(s for s, _ in plans)
    if spare <= 0:
        return 0
    removed = 0
    for (owner, rnn_attr, reader_attr), (_, dead) in zip(pairs, plans):
        rnn = getattr(owner, rnn_attr)
        new, reader = _cut_rnn(rnn, getattr(owner, reader_attr), dead, spare)
        setattr(owner, rnn_attr, new)
        setattr(owner, reader_attr, reader)
        removed += spare * rnn.num_layers
    return removed


def _rnn_projection_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """``LSTM -> Linear`` paths (:class:`leanse.models.dprnn.SequenceRNN`) of dual-path models."""
    return [(m, "rnn", "proj") for m in model.modules()
            if isinstance(getattr(m, "rnn", None), nn.RNNBase)
            and isinstance(getattr(m, "proj", None), nn.Linear)]


# --------------------------------------------------------------------------------------------
# Linear chains (FDNN)
# --------------------------------------------------------------------------------------------


#: Elementwise modules that may sit between two Linear layers of a removable chain.
_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.GELU, nn.Identity,
                nn.Dropout)


@torch.no_grad()
def _shrink_linear_chain(owner: nn.Module) -> int:
    """Equal-width removal in an ``nn.Sequential`` of Linear -> elementwise -> Linear ... layers.

    Dead per hidden layer: unread (a zero column in the next layer) or a zero row (the unit
    outputs the constant ``act(b)``, folded into the next bias: ``b' += W[:, j] act(b_j)``);
    every layer loses the same number of units."""
    seq: nn.Sequential = owner.net
    items = list(seq)
    linears = [m for m in items if isinstance(m, nn.Linear)]
    if len(linears) < 2 or not all(isinstance(m, (nn.Linear, *_ELEMENTWISE)) for m in items):
        return 0
    deads = [(first.weight.abs().sum(dim=1) == 0) | (second.weight.abs().sum(dim=0) == 0)
             for first, second in zip(linears, linears[1:])]
    spare = min(min(int(d.sum()) for d in deads), len(deads[0]) - 1)  # keep a unit: valid shapes
    if spare == 0:
        return 0
    index = {id(m): i for i, m in enumerate(items)}
    for layer, dead in enumerate(deads):
        keep = torch.ones_like(dead)
        keep[dead.nonzero().flatten()[:spare]] = False
        first, second = linears[layer], linears[layer + 1]
        row_dead = (first.weight.abs().sum(dim=1) == 0) & ~keep
        fold = row_dead & (second.weight.abs().sum(dim=0) != 0)
        if bool(fold.any()):
            const = first.bias[fold] if first.bias is not None else torch.zeros(int(fold.sum()))
            for m in items[index[id(first)] + 1:index[id(second)]]:  # stateless (Dropout: eval)
                const = m.eval()(const)
            if second.bias is None:
                second.bias = nn.Parameter(torch.zeros(second.out_features))
            second.bias.add_(second.weight[:, fold] @ const)
        _cut_outputs(first, keep)
        _cut_inputs(second, 0, keep)
    return spare * len(deads)


# --------------------------------------------------------------------------------------------
# Convolution channels (TCNN, GCRN)
# --------------------------------------------------------------------------------------------


def _select(module: nn.Module, name: str, index: torch.Tensor, dim: int) -> None:
    """Keep ``index`` along ``dim`` of a parameter or buffer (it stays registered as such)."""
    tensor = getattr(module, name, None)
    if tensor is None:
        return
    new = tensor.detach().index_select(dim, index).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, new)


def _cut_outputs(module: nn.Module, keep: torch.Tensor) -> None:
    """Remove the channels ``~keep`` that ``module`` writes (or normalises / scales)."""
    index = keep.nonzero().flatten()
    count = len(index)
    if isinstance(module, _CONV_T):
        if module.groups != 1:
            raise NotImplementedError("grouped transposed convolutions are not shrunk")
        _select(module, "weight", index, 1)  # [C_in, C_out, *k]
        _select(module, "bias", index, 0)
        module.out_channels = count
    elif isinstance(module, _CONV):
        _select(module, "weight", index, 0)  # [C_out, C_in / groups, *k]
        _select(module, "bias", index, 0)
        if module.groups > 1:  # depthwise: channel j reads only input j, so both go
            if not module.groups == module.in_channels == module.out_channels:
                raise NotImplementedError("only depthwise grouped convolutions are shrunk")
            module.in_channels = module.groups = count
        module.out_channels = count
    elif isinstance(module, nn.Linear):
        _select(module, "weight", index, 0)
        _select(module, "bias", index, 0)
        module.out_features = count
    elif isinstance(module, _NORM):
        for name in ("weight", "bias", "running_mean", "running_var"):
            _select(module, name, index, 0)
        module.num_features = count
    elif isinstance(module, nn.PReLU):
        if module.num_parameters > 1:
            _select(module, "weight", index, 0)
            module.num_parameters = count
    else:
        raise NotImplementedError(f"cannot remove channels of {type(module).__name__}")


def _input_keep(module: nn.Module, offset: int, keep: torch.Tensor) -> torch.Tensor:
    full = torch.ones(_in_width(module), dtype=torch.bool)
    full[offset:offset + len(keep)] = keep
    return full


def _in_width(module: nn.Module) -> int:
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


def _in_dim(module: nn.Module) -> int:
    """Dimension of ``module.weight`` indexing input channels."""
    if isinstance(module, _CONV_T):
        return 0  # [C_in, C_out, *k]
    if isinstance(module, _CONV) and module.groups != 1:
        raise NotImplementedError("a grouped convolution's input channels are not shrunk alone")
    return 1


def _cut_inputs(module: nn.Module, offset: int, keep: torch.Tensor) -> None:
    """Remove input channels ``offset + j`` for ``j`` in ``~keep``."""
    index = _input_keep(module, offset, keep).nonzero().flatten()
    _select(module, "weight", index, _in_dim(module))
    if isinstance(module, nn.Linear):
        module.in_features = len(index)
    else:
        module.in_channels = len(index)


@torch.no_grad()
def _unread(module: nn.Module, offset: int, width: int) -> torch.Tensor:
    """``[width]`` bool: input channels ``offset ...`` whose every kernel in ``module`` is zero."""
    dim = _in_dim(module)
    w = module.weight.detach().narrow(dim, offset, width).transpose(0, dim)  # [width, ...]
    return w.reshape(width, -1).abs().sum(dim=1) == 0


#: A reader of a channel set: the module, and where the set starts among its input channels
#: (``-1``: the set is the last part of a concatenated input, as a skip connection is).
Reader = tuple[nn.Module, int]


@dataclass
class _Channels:
    """One set of channels: the modules that write them (output channels; norms, per-channel
    activations and depthwise convolutions on the way count as writers), the modules that read
    them, and how many input channels each reader has per channel (``spread``: a channel of a
    ``[C, W]`` map flattened to ``C x W`` features is ``W`` inputs)."""

    width: int
    writers: list[nn.Module]
    readers: list[Reader]
    spread: int = 1
    #: extra readers whose *outputs* carry the channels too (a residual stream: blocks add to it)
    residual_writers: list[nn.Module] = field(default_factory=list)
    #: a per-channel ``dead`` mask beyond "unread", with the fold that makes removing it exact
    constant: Callable[[], torch.Tensor] | None = None
    fold: Callable[[torch.Tensor], None] | None = None

    def offset(self, reader: Reader) -> int:
        module, offset = reader
        return _in_width(module) - self.width * self.spread if offset < 0 else offset

    def dead(self) -> torch.Tensor:
        dead = torch.ones(self.width, dtype=torch.bool)
        for reader in self.readers:
            unread = _unread(reader[0], self.offset(reader), self.width * self.spread)
            dead &= unread.reshape(self.width, self.spread).all(dim=1)
        if self.constant is not None:
            dead |= self.constant()
        return dead

    def cut(self, keep: torch.Tensor) -> None:
        if self.fold is not None:
            self.fold(~keep)
        spread = keep.repeat_interleave(self.spread)
        for reader in self.readers:
            _cut_inputs(reader[0], self.offset(reader), spread)
        for module in self.writers:
            _cut_outputs(module, keep)
        for module in self.residual_writers:
            _cut_outputs(module, spread)


@torch.no_grad()
def _remove_tied(sites: list[Callable[[], _Channels]]) -> list[int]:
    """Remove the same number of dead channels from every set in ``sites`` (one config entry
    sets all their widths); sites are rebuilt before each cut so that readers' offsets into
    concatenated inputs are current. Returns each set's new width."""
    deads = [site().dead() for site in sites]
    spare = min(min(int(d.sum()), len(d) - 1) for d in deads)  # keep a channel: valid shapes
    widths = []
    for site, dead in zip(sites, deads):
        keep = torch.ones_like(dead)
        keep[dead.nonzero().flatten()[:spare]] = False
        if spare:
            site().cut(keep)
        widths.append(int(keep.sum()))
    return widths


def _tcm_hidden(block: nn.Module) -> _Channels:
    """A TCNN residual block's middle channels: ``inp -> PReLU -> BN -> depthwise -> PReLU ->
    BN -> out``. A zero depthwise kernel makes its channel the constant ``BN2(PReLU2(b))``,
    which the 1x1 ``out`` convolution reads as ``W[:, j] * c`` at every step: folded into its
    bias."""

    def constant() -> torch.Tensor:
        return block.depthwise.weight.detach().flatten(1).abs().sum(dim=1) == 0

    def fold(drop: torch.Tensor) -> None:
        bias = block.depthwise.bias
        level = (bias.detach() if bias is not None
                 else torch.zeros(block.depthwise.out_channels))[None, :, None]  # [1, H, 1]
        was = block.norm2.training
        block.norm2.eval()  # inference statistics (see the module docstring)
        level = block.norm2(block.act2(level))[0, :, 0]  # [H]
        block.norm2.train(was)
        fold_at = drop & constant()
        out = block.out
        if out.bias is None:
            out.bias = nn.Parameter(torch.zeros(out.out_channels))
        out.bias.add_(out.weight[:, fold_at, 0] @ level[fold_at])

    return _Channels(block.depthwise.out_channels,
                     [block.inp, block.act1, block.norm1, block.depthwise, block.act2, block.norm2],
                     [(block.out, 0)], constant=constant, fold=fold)


@torch.no_grad()
def _shrink_tcnn(model: nn.Module) -> int:
    """TCNN: encoder layer ``k`` (``encoder_channels[k]``) is read by encoder ``k + 1`` and, as
    a skip, by decoder layer ``6 - k``; decoder layer ``5 - k`` writes ``encoder_channels[k]``
    channels too (it undoes encoder ``k + 1``), read by decoder ``6 - k``."""
    before = count_parameters(model)
    enc, dec = model.encoder, model.decoder
    last = len(enc) - 1
    channels = list(model.encoder_channels)

    def encoder_site(k: int) -> Callable[[], _Channels]:
        return lambda: _Channels(enc[k].out_channels,
                                 [enc[k], model.encoder_norms[k], model.encoder_acts[k]],
                                 [(enc[k + 1], 0), (dec[last - k], -1)])

    def decoder_site(m: int) -> Callable[[], _Channels]:
        return lambda: _Channels(dec[m].out_channels,
                                 [dec[m], model.decoder_norms[m], model.decoder_acts[m]],
                                 [(dec[m + 1], 0)])

    for k in range(last):
        channels[k] = _remove_tied([encoder_site(k), decoder_site(last - 1 - k)])[0]

    # The residual stream of the temporal convolution module: the last encoder layer's channels
    # x its frequency width, written by the encoder and by every block's 1x1 output, read by
    # every block's 1x1 input and by the first decoder layer (as the stream and as the skip).
    width = model.widths[-1]
    blocks = list(model.tcm)

    def stream() -> _Channels:
        return _Channels(enc[last].out_channels,
                         [enc[last], model.encoder_norms[last], model.encoder_acts[last]],
                         [(b.inp, 0) for b in blocks], spread=width,
                         residual_writers=[b.out for b in blocks])

    def first_decoder(offset: int) -> Callable[[], _Channels]:
        return lambda: _Channels(enc[last].out_channels, [], [(dec[0], offset)])

    dead = stream().dead() & first_decoder(0)().dead() & first_decoder(-1)().dead()
    spare = min(int(dead.sum()), len(dead) - 1)
    if spare:
        keep = torch.ones_like(dead)
        keep[dead.nonzero().flatten()[:spare]] = False
        first_decoder(-1)().cut(keep)
        first_decoder(0)().cut(keep)
        stream().cut(keep)
    channels[last] = len(dead) - spare

    hidden = _remove_tied([lambda b=b: _tcm_hidden(b) for b in blocks])[0] if blocks else model.tcm_hidden
    model.encoder_channels = channels
    model.tcm_hidden = hidden
    return before - count_parameters(model)


@torch.no_grad()
def _shrink_gcrn(model: nn.Module) -> int:
    """GCRN: gated encoder block ``k < 4`` is read by block ``k + 1`` and, as a skip, by decoder
    block ``4 - k`` of both decoders; decoder block ``k < 4`` of each decoder is read by its block
    ``k + 1`` (both decoders lose the same number: one ``decoder_channels[k]``)."""
    before = count_parameters(model)
    enc = model.encoder
    last = len(enc) - 1
    decoders = [model.decoder_real, model.decoder_imag]
    encoder_channels = list(model.encoder_channels)
    decoder_channels = list(model.decoder_channels)

    def gated_readers(block: nn.Module, offset: int) -> list[Reader]:
        return [(block.conv, offset), (block.gate, offset)]

    def encoder_site(k: int) -> Callable[[], _Channels]:
        def site() -> _Channels:
            readers = gated_readers(enc[k + 1], 0)
            for decoder in decoders:
                readers += gated_readers(decoder.blocks[last - k], -1)
            return _Channels(enc[k].conv.out_channels,
                             [enc[k].conv, enc[k].gate, model.encoder_norms[k]], readers)
        return site

    def decoder_site(decoder: nn.Module, k: int) -> Callable[[], _Channels]:
        return lambda: _Channels(decoder.blocks[k].conv.out_channels,
                                 [decoder.blocks[k].conv, decoder.blocks[k].gate, decoder.norms[k]],
                                 gated_readers(decoder.blocks[k + 1], 0))

    for k in range(last):  # not the last block: tied to the grouped LSTM (module docstring)
        encoder_channels[k] = _remove_tied([encoder_site(k)])[0]
    for k in range(len(decoder_channels) - 1):  # the last block writes the 1 output channel
        decoder_channels[k] = _remove_tied([decoder_site(d, k) for d in decoders])[0]
    model.encoder_channels = encoder_channels
    model.decoder_channels = decoder_channels
    return before - count_parameters(model)


#: Convolutional families by registered model name: ``shrink(model) -> parameters removed``.
_CONV_FAMILIES: dict[str, Callable[[nn.Module], int]] = {"tcnn": _shrink_tcnn, "gcrn": _shrink_gcrn}


# --------------------------------------------------------------------------------------------


def shrink_model(model: nn.Module) -> dict:
    """Remove dead units / channels in place where the architecture allows (module docstring).

    Returns ``{"units_removed", "params_before", "params_after", "reloadable", "handled"}``;
    ``units_removed`` counts RNN units (per layer) or, for convolutional models, the parameters
    removed; ``reloadable`` says that the model rebuilt from ``model.config`` has the shrunk shapes.
    """
    before = count_parameters(model)
    removed = 0
    handled = []
    family = getattr(type(model), "registered_name", None)
    pairs = _rnn_projection_pairs(model)
    if isinstance(getattr(model, "specialists", None), nn.ModuleList) and \
            isinstance(getattr(model, "gate", None), nn.Module):
        # a sparse ensemble (000/001): each specialist and the gate on its own; the ensemble's
        # config is made of theirs (specialists that end up different are listed one by one)
        for part in [*model.specialists, model.gate]:
            info = shrink_model(part)
            removed += info["units_removed"]
            handled += info["handled"]
    elif family in _CONV_FAMILIES:
        removed += _CONV_FAMILIES[family](model)
        handled.append(f"{family} channels")
    elif pairs and hasattr(model, "hidden_size"):
        removed += _shrink_rnn_pairs(pairs)
        model.hidden_size = pairs[0][0].rnn.hidden_size
        handled.append("rnn -> proj paths")
    elif isinstance(getattr(model, "rnn", None), nn.RNNBase) and \
            isinstance(getattr(model, "dense", None), nn.Linear) and hasattr(model, "hidden_size"):
        removed += _shrink_rnn_pairs([(model, "rnn", "dense")])
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
        # the model's own class from its config (gates live in another registry than models)
        rebuilt = type(model)(**{k: v for k, v in model.config.items() if k != "name"})
        mine = {k: v.shape for k, v in model.state_dict().items()}
        theirs = {k: v.shape for k, v in rebuilt.state_dict().items()}
        reloadable = mine == theirs
    return {"units_removed": removed, "params_before": before,
            "params_after": count_parameters(model), "reloadable": reloadable,
            "handled": handled}

"""The one way to count cost: parameters, MACs, effective (run-time) cost, bytes on disk, RTF.

Every report and table takes its numbers from here (DESIGN.md, "Counting cost, one way").

Parameters
    ``sum(p.numel() for p in model.parameters())`` (shared tensors once, as ``parameters()`` does).

MACs -- two conventions (``/work/shared/FIDELITY.md``, "Counting conventions")
    Both count one forward pass at batch 1 in eval mode under ``torch.no_grad()`` on
    ``seconds * sample_rate`` samples of seeded random noise. Both count with forward hooks on a
    real forward pass, so they give the MACs that actually run: a hard-gated ensemble counts its
    gate and the one chosen specialist, BLOOM-Net with ``blocks=l`` its first ``l`` blocks.

    ``paper``
        thop's conventions, because thop is the tool paper 002 names and the published numbers are
        thop numbers. It is ``thop.profile`` (0.1.1.post2209072238) with its own rules:

        * Linear: ``in_features`` per output element; Conv: ``C_in/groups * prod(kernel)`` per
          output element; biases are not counted.
        * a transposed convolution is counted at every *output* position like a convolution, which
          overcounts it by the stride (FIDELITY: this is what the 002/004 numbers mean);
        * LSTM ``4H(I+H) + 16H``, GRU ``3H(I+H) + 13H``, tanh RNN ``H(I+H) + 3H`` per time step,
          layer and direction (``8H`` / ``7H`` / ``H`` without biases) -- the 16H/13H terms are
          thop's bias additions and gate products; 004's 12.13G for ``lstm-4x1024`` needs them;
        * BatchNorm / LayerNorm / InstanceNorm ``2 * numel`` (``4 *`` with affine), PReLU ``numel``
          in eval mode, Softmax ``3n - 1`` per vector, ReLU / LeakyReLU / pooling-by-max 0;
        * everything else is 0: GroupNorm, a hand-written gLN, Sigmoid, Tanh, ELU, and every
          *functional* op (``torch.stft``, ``x * mask``, ``torch.matmul``...).

        ``custom_ops`` change none of these numbers; they fix thop where it would misread a model:
        thop looks rules up by *exact* type, so a subclass of ``nn.Conv1d`` or ``nn.LSTM`` would
        silently count 0 -- subclasses get their base class's rule; thop reads the batch size of
        an unbatched (2-D) RNN input from the feature axis -- our RNN rule reads it right, with
        thop's formula; GroupNorm is pinned to 0 explicitly, should a later thop start counting
        it. Activations are left as thop counts them (PReLU ``numel``): zeroing PReLU breaks the
        BLOOM-Net row of FIDELITY (its l=2,4,5,6 MACs only come out with PReLU counted).

    ``exact``
        Our own hook counter of every multiply the model runs, as multiply-accumulates:

        * Linear and Conv as above; a transposed convolution per *input* element:
          ``C_out/groups * prod(kernel)`` each (what it really computes);
        * RNNs with the same per-step formulas as ``paper`` (their elementwise terms are < 1 % of
          the matrix products at the sizes used here), over the steps actually run (a
          PackedSequence counts ``sum(batch_sizes)``, not thop's ``max batch * steps``);
          ``proj_size`` LSTMs from their real weight shapes;
        * normalisation: BatchNorm in eval folds into one scale-and-shift, 1 MAC per element;
          norms with run-time statistics (GroupNorm, LayerNorm, InstanceNorm, RMSNorm, BatchNorm in
          training) 2 MACs per element (the sum of squares for the variance, and the normalising
          scale-and-shift with the affine folded into it);
        * activations 0 (Sigmoid, Tanh, ReLU, PReLU, ELU, Softmax...: no multiply-accumulate of
          data by weights; their cost is transcendental functions, which MACs do not describe);
        * MultiheadAttention: the four projections and the two attention products;
        * functional ops outside a counted module, seen through a ``TorchFunctionMode``:
          ``linear``, ``matmul`` / ``mm`` / ``bmm`` / ``addmm`` / ``baddbmm``, two-operand
          ``einsum``, ``conv*`` / ``conv_transpose*``, ``scaled_dot_product_attention``,
          ``layer_norm`` / ``group_norm`` / ``batch_norm`` / ``instance_norm``, elementwise
          multiplications and divisions (``*``, ``/``, ``mul``, ``div``, ``addcmul``,
          ``addcdiv``; 1 per output element, 2 for complex x real, 4 for complex x complex), and
          the FFTs: a real FFT of ``N`` points is counted as ``N log2 N`` real multiplies (a
          radix-2 real FFT via an ``N/2``-point complex FFT: ``(N/4) log2(N/2)`` complex products
          of 4 real multiplies, plus ``N/4`` for the split), a complex FFT ``2 N log2 N``;
          ``torch.stft`` adds ``N`` window multiplies per frame; ``torch.istft`` adds ``N`` per
          frame for the synthesis window and 1 per output sample for the window-envelope
          division; overlap-add is additions only.

        Still *not* counted in ``exact`` (be honest in reports): additions and subtractions
        (residual adds, overlap-add, biases), reductions (``mean``, ``sum``), powers, square
        roots, complex magnitudes (``abs``), exponentials and the rest of the activations,
        padding / reshaping / indexing, and composite functional ops without a rule (for example
        ``F.multi_head_attention_forward`` called directly). Ops inside a counted module are never
        counted twice: the module's rule covers them. A module type can opt in with a method
        ``exact_macs(args, kwargs, output) -> int`` (or :func:`register_exact_rule`); modules that
        run, own parameters and have no rule are listed in ``no_rule_modules`` of a profile (in
        ``exact`` their recognised functional ops are still counted; in ``paper`` they count 0).

Effective (run-time) parameters
    The parameters owned directly by the modules whose forward ran during the counting pass, plus
    any parameter handed to a torch function during it (``MultiheadAttention`` uses its
    ``out_proj`` weights without calling ``out_proj``), each tensor once: the gate plus the chosen
    specialist of a hard-gated ensemble. A module that runs counts all its own parameters even if
    it used only some (raw expert weights held directly by one module would all count): keep
    experts as sub-modules, as leanse's ensembles do. ``effective_macs`` equals ``macs`` (both
    are run-time counts); the key exists so tables name what they show.

Bytes
    Size of the model's weights serialised with safetensors (the ``state_dict``, shared tensors
    once, no metadata); a packed compressed model's ``packed_bytes()`` method wins if present.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from leanse.errors import ConfigError

CONVENTIONS = ("paper", "exact")
#: Seed of the random-noise input, so that routed models pick the same expert on every count.
NOISE_SEED = 0

__all__ = [
    "CONVENTIONS",
    "Cost",
    "count_parameters",
    "count_macs",
    "trace_cost",
    "model_bytes",
    "measure_rtf",
    "profile_model",
    "reduction",
    "register_exact_rule",
]


# --------------------------------------------------------------------------------------------
# Parameters and bytes
# --------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """All parameters: ``sum(p.numel() for p in model.parameters())`` (FIDELITY convention)."""
    return int(sum(p.numel() for p in model.parameters()))


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights on disk.

    A model that knows its packed (compressed) size says so with ``packed_bytes()``; otherwise this
    is the length of the safetensors serialisation of its ``state_dict`` (tensors that share
    storage are written once, as a checkpoint writes them; no metadata).
    """
    packed = getattr(model, "packed_bytes", None)
    if callable(packed):
        return int(packed())
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...], torch.dtype]] = set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach()
        # safetensors refuses aliased tensors; a tied weight is stored once on disk anyway.
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tensor.dtype)
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.to("cpu").contiguous().clone()
    return len(save(tensors))


# --------------------------------------------------------------------------------------------
# Per-op formulas shared by both conventions
# --------------------------------------------------------------------------------------------

# Elementwise work per hidden unit and step, on top of the matrix products, in thop's accounting
# (bias additions, gate Hadamard products). Index: has_bias.
_RNN_ELEMENTWISE = {"LSTM": (8, 16), "GRU": (7, 13), "RNN_TANH": (1, 3), "RNN_RELU": (1, 3)}


def _rnn_step_macs(m: nn.RNNBase) -> int:
    """MACs of one time step (all layers and directions) of an ``nn.RNN/LSTM/GRU`` at batch 1.

    The matrix products are read off the weight shapes, which is thop's ``4H(I+H)`` / ``3H(I+H)``
    for plain LSTMs/GRUs and also right for ``proj_size`` LSTMs (thop ignores the projection).
    """
    per_unit = _RNN_ELEMENTWISE[m.mode][int(bool(m.bias))]
    total = 0
    for layer in range(m.num_layers):
        for suffix in ("", "_reverse")[: 2 if m.bidirectional else 1]:
            for kind in ("ih", "hh", "hr"):
                weight = getattr(m, f"weight_{kind}_l{layer}{suffix}", None)
                if weight is not None:
                    total += weight.numel()
            total += per_unit * m.hidden_size
    return total


def _rnn_sequences(m: nn.RNNBase, x: Any, convention: str) -> int:
    """Number of (sequence, step) pairs the RNN ran: batch * steps."""
    if isinstance(x, PackedSequence):
        sizes = x.batch_sizes
        if convention == "paper":  # thop: largest batch times number of steps
            return int(sizes.max()) * int(sizes.numel())
        return int(sizes.sum())
    if x.dim() == 2:  # unbatched [T, I]; thop would take I as the batch size
        return int(x.shape[0])
    batch, steps = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
    return int(batch) * int(steps)


def _rnn_cell_step_macs(m: nn.RNNCellBase) -> int:
    kind = "RNN_TANH"
    if isinstance(m, (nn.LSTMCell, nn.GRUCell)):
        kind = "LSTM" if isinstance(m, nn.LSTMCell) else "GRU"
    per_unit = _RNN_ELEMENTWISE[kind][int(bool(m.bias))]
    return m.weight_ih.numel() + m.weight_hh.numel() + per_unit * m.hidden_size


def _cell_batch(x: torch.Tensor) -> int:
    return 1 if x.dim() == 1 else int(x.shape[0])


def _fft_macs(n: int, complex_input: bool = False) -> float:
    """Real multiplies of one ``n``-point FFT: ``n log2 n`` real, ``2 n log2 n`` complex."""
    if n <= 1:
        return 0.0
    return (2.0 if complex_input else 1.0) * n * math.log2(n)


# --------------------------------------------------------------------------------------------
# The ``paper`` convention: thop
# --------------------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence thop's deprecation warnings (distutils, ``calculate_relu``) and log noise."""
    import logging

    logger = logging.getLogger()
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _thop() -> tuple[Callable[..., Any], dict[type, Callable[..., Any]]]:
    """``thop.profile`` and thop's default rule table (imported lazily, quietly)."""
    with _quiet():
        module = importlib.import_module("thop.profile")  # the module, not the function
    return module.profile, module.register_hooks


def _paper_rnn(m: nn.RNNBase, args: tuple, output: Any) -> None:
    # thop's formula, with the batch read correctly for unbatched input (see module docstring).
    m.total_ops += torch.DoubleTensor([_rnn_step_macs(m) * _rnn_sequences(m, args[0], "paper")])


def _paper_rnn_cell(m: nn.RNNCellBase, args: tuple, output: Any) -> None:
    m.total_ops += torch.DoubleTensor([_rnn_cell_step_macs(m) * _cell_batch(args[0])])


def _paper_zero(m: nn.Module, args: tuple, output: Any) -> None:
    m.total_ops += torch.DoubleTensor([0.0])


def _paper_custom_ops(model: nn.Module, defaults: dict[type, Callable]) -> dict[type, Callable]:
    """thop ``custom_ops`` for this model: the overrides described in the module docstring."""
    ops: dict[type, Callable] = {nn.GroupNorm: _paper_zero}
    for cls in (nn.RNN, nn.LSTM, nn.GRU):
        ops[cls] = _paper_rnn
    for cls in (nn.RNNCell, nn.LSTMCell, nn.GRUCell):
        ops[cls] = _paper_rnn_cell
    for module in model.modules():
        cls = type(module)
        if cls in ops or cls in defaults or isinstance(module, nn.Sequential):
            continue
        # thop matches exact types; give a subclass (CausalConv1d(nn.Conv1d), ...) its base's rule.
        for base in cls.__mro__[1:]:
            if base in ops or (base in defaults and base is not nn.Sequential):
                ops[cls] = ops.get(base, defaults.get(base))
                break
    return ops


def _paper_has_rule(module: nn.Module, rules: dict[type, Callable]) -> bool:
    return type(module) in rules


# --------------------------------------------------------------------------------------------
# The ``exact`` convention: module rules + functional ops
# --------------------------------------------------------------------------------------------

ExactRule = Callable[[nn.Module, tuple, dict, Any], float]
_EXACT_RULES: dict[type, ExactRule] = {}


def register_exact_rule(cls: type[nn.Module]) -> Callable[[ExactRule], ExactRule]:
    """Decorator: ``rule(module, args, kwargs, output) -> MACs`` for ``cls`` and its subclasses.

    The rule covers everything the module runs (its children and functional ops are not counted
    again). A module may instead define ``exact_macs(args, kwargs, output)``.
    """

    def decorate(rule: ExactRule) -> ExactRule:
        _EXACT_RULES[cls] = rule
        return rule

    return decorate


def _first_tensor(args: tuple, kwargs: dict, name: str | None = None) -> Any:
    if args:
        return args[0]
    return kwargs.get(name) if name else next(iter(kwargs.values()), None)


def _numel(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0].numel()
    return 0


@register_exact_rule(nn.Linear)
def _exact_linear(m: nn.Linear, args: tuple, kwargs: dict, out: torch.Tensor) -> float:
    return out.numel() * m.in_features


@register_exact_rule(nn.Bilinear)
def _exact_bilinear(m: nn.Bilinear, args: tuple, kwargs: dict, out: torch.Tensor) -> float:
    return out.numel() * m.in1_features * (m.in2_features + 1)  # x1^T (W x2)


@register_exact_rule(nn.modules.conv._ConvNd)
def _exact_conv(m: nn.modules.conv._ConvNd, args: tuple, kwargs: dict, out: torch.Tensor) -> float:
    per_element = m.weight.shape[1:].numel()
    if m.transposed:
        # weight [C_in, C_out/g, *k]: every input element is multiplied into C_out/g * k outputs.
        return _first_tensor(args, kwargs, "input").numel() * per_element
    # weight [C_out, C_in/g, *k]: every output element is a C_in/g * k dot product.
    return out.numel() * per_element


@register_exact_rule(nn.RNNBase)
def _exact_rnn(m: nn.RNNBase, args: tuple, kwargs: dict, out: Any) -> float:
    return _rnn_step_macs(m) * _rnn_sequences(m, _first_tensor(args, kwargs, "input"), "exact")


@register_exact_rule(nn.RNNCellBase)
def _exact_rnn_cell(m: nn.RNNCellBase, args: tuple, kwargs: dict, out: Any) -> float:
    return _rnn_cell_step_macs(m) * _cell_batch(_first_tensor(args, kwargs, "input"))


@register_exact_rule(nn.modules.batchnorm._BatchNorm)
def _exact_batch_norm(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> float:
    folded = not m.training and getattr(m, "track_running_stats", False)
    return (1 if folded else 2) * _numel(out)


def _exact_runtime_norm(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> float:
    return 2 * _numel(out)


for _norm in (nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
              nn.LocalResponseNorm, getattr(nn, "RMSNorm", nn.LayerNorm)):
    _EXACT_RULES.setdefault(_norm, _exact_runtime_norm)


@register_exact_rule(nn.MultiheadAttention)
def _exact_mha(m: nn.MultiheadAttention, args: tuple, kwargs: dict, out: Any) -> float:
    names = ("query", "key", "value")
    q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
    time_axis = 1 if m.batch_first and q.dim() == 3 else 0
    batch = 1 if q.dim() == 2 else q.shape[1 - time_axis]
    lq, lk = q.shape[time_axis], k.shape[time_axis]
    e = m.embed_dim
    projections = lq * e * e + lk * e * m.kdim + lk * e * m.vdim + lq * e * e
    return batch * (projections + 2 * lq * lk * e)


def _exact_zero(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> float:
    return 0


@register_exact_rule(nn.modules.pooling._AdaptiveAvgPoolNd)
@register_exact_rule(nn.modules.pooling._AvgPoolNd)
def _exact_avg_pool(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> float:
    return _numel(out)  # the sum is additions; one scaling multiply per output


@register_exact_rule(nn.Upsample)
def _exact_upsample(m: nn.Upsample, args: tuple, kwargs: dict, out: Any) -> float:
    weights = {"nearest": 0, "linear": 2, "bilinear": 4, "trilinear": 8, "bicubic": 16}
    return weights.get(m.mode, 0) * _numel(out)


# Modules that compute no multiply-accumulates. Activations are 0 by convention (FIDELITY).
for _zero in (nn.Identity, nn.Dropout, nn.modules.dropout._DropoutNd, nn.Flatten, nn.Unflatten,
              nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
              nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
              nn.modules.padding._ReplicationPadNd, nn.PixelShuffle, nn.PixelUnshuffle,
              nn.Embedding, nn.ChannelShuffle):
    _EXACT_RULES.setdefault(_zero, _exact_zero)
for _name in nn.modules.activation.__all__:
    _cls = getattr(nn.modules.activation, _name)
    if isinstance(_cls, type) and issubclass(_cls, nn.Module):
        _EXACT_RULES.setdefault(_cls, _exact_zero)


def _exact_rule(module: nn.Module) -> Callable[[tuple, dict, Any], float] | None:
    own = getattr(module, "exact_macs", None)
    if callable(own):
        return own
    for base in type(module).__mro__:
        rule = _EXACT_RULES.get(base)
        if rule is not None:
            return lambda args, kwargs, out, _rule=rule: _rule(module, args, kwargs, out)
    return None


# Functional ops, by ``__name__`` (a torch function reaches the mode as e.g. ``TensorBase.mul``,
# ``torch._C._nn.linear`` or ``torch.functional.stft`` depending on how it was called).
_ELEMENTWISE = {"mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__", "div", "div_",
                "divide", "true_divide", "__truediv__", "__rtruediv__", "__itruediv__",
                "addcmul", "addcmul_", "addcdiv", "addcdiv_"}
_MATMUL_FIRST = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm"}
_MATMUL_SECOND = {"addmm", "addmm_", "baddbmm", "baddbmm_"}
_NORMS = {"layer_norm": 2, "group_norm": 2, "instance_norm": 2, "rms_norm": 2}


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _einsum_macs(args: tuple, out: Any) -> float:
    if not args or not isinstance(args[0], str):
        return 0
    operands = args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    equation = args[0].replace(" ", "")
    inputs = equation.split("->")[0].split(",")
    if len(operands) != 2 or "..." in equation or len(inputs) != 2:
        return 0  # transposes, sums and n-ary or broadcast contractions are left uncounted
    sizes: dict[str, int] = {}
    for letters, operand in zip(inputs, operands):
        for letter, size in zip(letters, operand.shape):
            sizes[letter] = max(sizes.get(letter, 1), int(size))
    return float(math.prod(sizes.values()))


def _functional_macs(name: str, args: tuple, kwargs: dict, out: Any) -> float:
    """MACs of one functional op called outside any counted module (0 if it has no rule)."""
    if name in _ELEMENTWISE:
        if not isinstance(out, torch.Tensor):
            return 0
        operands = [a for a in args if isinstance(a, torch.Tensor)]
        n_complex = sum(1 for a in operands if a.is_complex())
        factor = 4 if n_complex >= 2 else 2 if n_complex == 1 else 1
        return factor * out.numel()
    if name == "linear":
        return out.numel() * _arg(args, kwargs, 1, "weight").shape[-1]
    if name in _MATMUL_FIRST or name in _MATMUL_SECOND:
        first = args[1] if name in _MATMUL_SECOND else args[0]
        return out.numel() * first.shape[-1]
    if name == "einsum":
        return _einsum_macs(args, out)
    if name in ("conv1d", "conv2d", "conv3d"):
        return out.numel() * _arg(args, kwargs, 1, "weight").shape[1:].numel()
    if name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        return args[0].numel() * _arg(args, kwargs, 1, "weight").shape[1:].numel()
    if name == "scaled_dot_product_attention":
        q, k, v = args[:3]
        return q.shape[:-1].numel() * k.shape[-2] * (q.shape[-1] + v.shape[-1])
    if name in _NORMS:
        return _NORMS[name] * out.numel()
    if name == "batch_norm":
        return (2 if _arg(args, kwargs, 5, "training", False) else 1) * out.numel()
    if name == "stft":
        return _stft_macs(args, kwargs, out)
    if name == "istft":
        return _istft_macs(args, kwargs, out)
    if name in ("fft_rfft", "fft_irfft", "fft_fft", "fft_ifft"):
        dim = _arg(args, kwargs, 2, "dim", -1)
        signal = out if name in ("fft_irfft", "fft_fft", "fft_ifft") else args[0]
        n = int(signal.shape[dim])
        transforms = signal.numel() // max(n, 1)
        return transforms * _fft_macs(n, complex_input=name in ("fft_fft", "fft_ifft"))
    return 0


def _stft_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> float:
    signal = args[0]
    n_fft = int(_arg(args, kwargs, 1, "n_fft"))
    window = _arg(args, kwargs, 4, "window")
    frames_axis = -1 if out.is_complex() else -2
    frames = out.shape[frames_axis]
    batch = 1 if signal.dim() == 1 else signal.shape[0]
    per_frame = _fft_macs(n_fft, complex_input=signal.is_complex())
    per_frame += n_fft if window is not None else 0
    return batch * frames * per_frame


def _istft_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> float:
    spec = args[0]
    n_fft = int(_arg(args, kwargs, 1, "n_fft"))
    window = _arg(args, kwargs, 4, "window")
    frames = spec.shape[-1]
    batch = 1 if spec.dim() == 2 else spec.shape[0]
    per_frame = _fft_macs(n_fft) + (n_fft if window is not None else 0)
    return batch * frames * per_frame + out.numel()  # + window-envelope division per sample


# Torch functions that only read metadata: a parameter passed to them was not used in compute.
_METADATA = {"__get__", "numel", "nelement", "size", "dim", "ndimension", "__len__", "stride",
             "storage_offset", "data_ptr", "element_size", "is_complex", "is_floating_point",
             "is_contiguous", "untyped_storage", "__format__", "__repr__", "__hash__"}


class _FunctionalWatcher(TorchFunctionMode):
    """Sees every torch function the forward pass calls.

    It records the parameters handed to them (for effective parameters) and, in ``exact``, counts
    the functional ops that run while no counted module is running.
    """

    def __init__(self, tracer: "_Tracer") -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name not in _METADATA:
            for value in (*args, *kwargs.values()):
                if isinstance(value, (list, tuple)):  # e.g. the flat weights of _VF.lstm
                    for item in value:
                        if isinstance(item, nn.Parameter):
                            self.tracer.used[id(item)] = item
                elif isinstance(value, nn.Parameter):
                    self.tracer.used[id(value)] = value
        if self.tracer.convention == "exact" and self.tracer.depth == 0 and name:
            self.tracer.macs += _functional_macs(name, args, kwargs, out)
        return out


# --------------------------------------------------------------------------------------------
# Tracing a forward pass
# --------------------------------------------------------------------------------------------


@dataclass
class Cost:
    """What one counting forward pass measured."""

    macs: int
    params: int
    effective_params: int
    convention: str
    #: Types of modules that ran, own parameters and have no counting rule (see module docstring).
    no_rule_modules: list[str] = field(default_factory=list)


@dataclass
class _Tracer:
    """Forward hooks that record which modules ran and, in ``exact``, count their MACs."""

    convention: str
    macs: float = 0.0
    depth: int = 0  # > 0 while a counted module (whose rule covers its internals) is running
    fired: dict[int, nn.Module] = field(default_factory=dict)
    used: dict[int, nn.Parameter] = field(default_factory=dict)  # handed to a torch function
    stack: list[bool] = field(default_factory=list)

    def attach(self, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        handles = []
        for module in model.modules():
            rule = _exact_rule(module) if self.convention == "exact" else None
            handles.append(module.register_forward_pre_hook(self._pre(rule), with_kwargs=True))
            handles.append(module.register_forward_hook(self._post(rule), with_kwargs=True,
                                                        always_call=True))
        return handles

    def _pre(self, rule: Callable | None) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self.fired[id(module)] = module
            counted = rule is not None
            self.stack.append(counted)
            self.depth += counted
        return hook

    def _post(self, rule: Callable | None) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            counted = self.stack.pop() if self.stack else False
            self.depth -= counted
            if counted and self.depth == 0:  # an enclosing counted module already covers it
                self.macs += float(rule(args, kwargs, output))
        return hook

    def effective_params(self) -> int:
        ran = dict(self.used)
        for module in self.fired.values():
            ran.update((id(p), p) for p in module.parameters(recurse=False))
        return int(sum(p.numel() for p in ran.values()))


class _CallWith(nn.Module):
    """Wrapper so that thop (which calls ``model(*inputs)``) can pass forward keyword arguments."""

    def __init__(self, model: nn.Module, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.kwargs = kwargs

    def forward(self, *inputs: Any) -> Any:
        return self.model(*inputs, **self.kwargs)


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Leave ``model`` exactly as it was: hooks, buffers, training flags (even after an error).

    Profiling works on the model itself rather than a deepcopy (no second copy of a large model in
    memory, and no failure on modules that cannot be deep-copied); thop registers ``total_ops`` /
    ``total_params`` buffers and hooks on every module, which this removes again.
    """
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                  "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")
    snapshot = []
    for module in model.modules():
        snapshot.append((
            module,
            module.training,
            set(module._buffers),
            set(module._non_persistent_buffers_set),
            {name: set(getattr(module, name, {})) for name in hook_dicts},
        ))
    try:
        yield
    finally:
        for module, training, buffers, non_persistent, hooks in snapshot:
            module.training = training
            for name in set(module._buffers) - buffers:
                del module._buffers[name]
            module._non_persistent_buffers_set.clear()
            module._non_persistent_buffers_set.update(non_persistent)
            for name, keys in hooks.items():
                table = getattr(module, name, None)
                if table is None:
                    continue
                for key in set(table) - keys:
                    del table[key]


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ConfigError(
            f"unknown counting convention {convention!r}; use 'paper' (thop's, as the papers "
            f"count) or 'exact' (every multiply the model runs)"
        )


def trace_cost(model: nn.Module, inputs: tuple | torch.Tensor, convention: str = "paper",
               **forward_kwargs: Any) -> Cost:
    """Count one eval-mode, ``no_grad`` forward pass of ``model(*inputs, **forward_kwargs)``.

    The general entry point (any module, any inputs); :func:`count_macs` and
    :func:`profile_model` call it with a waveform. The model is left exactly as it was.
    """
    _check_convention(convention)
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    tracer = _Tracer(convention)
    rules: dict[type, Callable] = {}
    with _restored(model):
        handles = tracer.attach(model)
        try:
            model.eval()
            if convention == "paper":
                profile, defaults = _thop()
                custom_ops = _paper_custom_ops(model, defaults)
                rules = {**defaults, **custom_ops}
                target = _CallWith(model, forward_kwargs) if forward_kwargs else model
                with _quiet(), _FunctionalWatcher(tracer):
                    macs, _ = profile(target, inputs, custom_ops=custom_ops, verbose=False)
            else:
                with torch.no_grad(), _FunctionalWatcher(tracer):
                    model(*inputs, **forward_kwargs)
                macs = tracer.macs
        finally:
            for handle in handles:
                handle.remove()
    no_rule = set()
    for module in tracer.fired.values():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        has_rule = (_paper_has_rule(module, rules) if convention == "paper"
                    else _exact_rule(module) is not None)
        if not has_rule:
            no_rule.add(type(module).__name__)
    return Cost(
        macs=int(round(macs)),
        params=count_parameters(model),
        effective_params=tracer.effective_params(),
        convention=convention,
        no_rule_modules=sorted(no_rule),
    )


# --------------------------------------------------------------------------------------------
# Waveform-level API
# --------------------------------------------------------------------------------------------


def _noise(model: nn.Module, seconds: float) -> torch.Tensor:
    """Batch-1 seeded random noise of ``seconds * model.sample_rate`` samples."""
    rate = getattr(model, "sample_rate", None)
    if rate is None:
        raise ConfigError(
            f"{type(model).__name__} has no sample_rate, so 'seconds' means nothing to it; "
            "count it with leanse.complexity.trace_cost(model, inputs) instead"
        )
    samples = int(round(float(seconds) * int(rate)))
    if samples < 1:
        raise ConfigError(f"seconds={seconds} gives no samples at {rate} Hz; use seconds > 0")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(NOISE_SEED)
    # 0.1 keeps the noise audio-like (|x| < 1) for models that clip or normalise.
    return (0.1 * torch.randn(1, samples, generator=generator)).to(device=device, dtype=dtype)


def count_macs(model: nn.Module, seconds: float, convention: str = "paper",
               **forward_kwargs: Any) -> int:
    """MACs of one forward pass over ``seconds`` of audio (run-time MACs; see module docstring)."""
    return trace_cost(model, _noise(model, seconds), convention, **forward_kwargs).macs


def measure_rtf(model: nn.Module, seconds: float, repeats: int = 3, threads: int = 1,
                **forward_kwargs: Any) -> float:
    """Real-time factor: median wall time of a forward pass / ``seconds`` (< 1 is faster).

    Eval mode, ``no_grad``, ``threads`` intra-op threads (the setting is restored afterwards),
    one untimed warm-up pass first (allocations, one-off kernel selection).
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, not {repeats}")
    wav = _noise(model, seconds)
    old_threads = torch.get_num_threads()
    training = {m: m.training for m in model.modules()}
    try:
        torch.set_num_threads(int(threads))
        model.eval()
        times = []
        with torch.no_grad():
            model(wav, **forward_kwargs)
            for _ in range(repeats):
                start = time.perf_counter()
                model(wav, **forward_kwargs)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(old_threads)
        for module, flag in training.items():
            module.training = flag
    return statistics.median(times) / float(seconds)


def _model_name(model: nn.Module) -> str:
    return getattr(model, "registered_name", "") or type(model).__name__


def profile_model(model: nn.Module, seconds: float, convention: str = "paper", rtf: bool = True,
                  **forward_kwargs: Any) -> dict[str, Any]:
    """Everything a report needs about the cost of ``model``, as a JSON-serialisable dict.

    Keys: ``model`` (registered name; callers that know the preset name overwrite it), ``params``,
    ``effective_params``, ``macs`` (for ``seconds``), ``macs_per_second``, ``effective_macs``,
    ``effective_macs_per_second``, ``bytes``, ``rtf`` (``None`` when ``rtf=False``),
    ``seconds``, ``sample_rate``, ``convention``, ``forward_kwargs`` and ``no_rule_modules``.
    """
    wav = _noise(model, seconds)
    cost = trace_cost(model, wav, convention, **forward_kwargs)
    seconds = float(seconds)
    return {
        "model": _model_name(model),
        "params": cost.params,
        "effective_params": cost.effective_params,
        "macs": cost.macs,
        "macs_per_second": cost.macs / seconds,
        "effective_macs": cost.macs,
        "effective_macs_per_second": cost.macs / seconds,
        "bytes": model_bytes(model),
        "rtf": measure_rtf(model, seconds, **forward_kwargs) if rtf else None,
        "seconds": seconds,
        "sample_rate": int(model.sample_rate),
        "convention": convention,
        "forward_kwargs": dict(forward_kwargs),
        "no_rule_modules": cost.no_rule_modules,
        **_separator_masker_cost(model, seconds, convention, forward_kwargs),
    }


def _separator_masker_cost(model: nn.Module, seconds: float, convention: str,
                           forward_kwargs: dict[str, Any]) -> dict[str, Any]:
    """003 Table 2 counts the separator and masker only (no encoder / decoder): models that can
    expose that part (``separator_masker(blocks)``) also report it, so the table's numbers come out
    of ``leanse profile`` directly."""
    view_of = getattr(model, "separator_masker", None)
    if view_of is None:
        return {}
    view = view_of(forward_kwargs.get("blocks"))
    macs = trace_cost(view, view.example_input(seconds), convention).macs
    return {"separator_masker_macs": macs, "separator_masker_macs_per_second": macs / seconds}


def reduction(model_profile: dict[str, Any], reference_profile: dict[str, Any]) -> dict[str, float]:
    """Fractional reductions of a model against a reference (e.g. a generalist): 0.487 = 48.7 %.

    ``params`` compares all parameters (an ensemble's K specialists + gate against the
    generalist), ``effective_params`` and ``effective_macs`` what runs per input (gate + one
    specialist) against what the reference runs. Paper 001's "48 %" is ``params`` and its
    "94 %" ``effective_params`` (which the counts put at 93.3 %; see tests/test_complexity.py).
    """
    out: dict[str, float] = {}
    for key in ("params", "effective_params", "macs", "effective_macs"):
        if key in model_profile and key in reference_profile and reference_profile[key]:
            out[key] = 1.0 - float(model_profile[key]) / float(reference_profile[key])
    return out

"""The ``exact`` convention: our own count of every multiply a model runs (module rules and the
functional ops seen through a ``TorchFunctionMode``), and the per-op formulas both conventions
share (RNN steps, FFTs). The rules are listed in :mod:`leanse.complexity`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

if TYPE_CHECKING:
    from leanse.complexity.counting import _Tracer

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

"""Counting one forward pass: parameters, bytes on disk, and MACs in the ``paper`` (thop) or
``exact`` convention with the effective (run-time) parameters (see :mod:`leanse.complexity`)."""

from __future__ import annotations

import importlib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from leanse.complexity.exact import (
    _cell_batch,
    _exact_rule,
    _FunctionalWatcher,
    _rnn_cell_step_macs,
    _rnn_sequences,
    _rnn_step_macs,
)
from leanse.errors import ConfigError

CONVENTIONS = ("paper", "exact")
#: Seed of the random-noise input, so that routed models pick the same expert on every count.
NOISE_SEED = 0

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

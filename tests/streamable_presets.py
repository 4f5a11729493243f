"""The streamable presets, defined once: tests/test_streaming.py and tests/test_export.py run over
:data:`STREAMABLE` (issue 9: "every streamable preset passes the streaming == offline test and the
ONNX parity tests").

Derived from the registry, not written by hand: every preset of the contract test's
:data:`~test_models_contract.FAST_PRESETS` (the presets with at most 3 M weights, which hold every
registered model class) whose built model declares that it streams.

Causal variants: a family with a ``causal`` option (BLOOM, ResNet-TasNet, DPRNN-TasNet, GroupComm)
registers its presets non-causal, as the papers train them; a non-causal model cannot stream (its
output reads the future), so what a user streams is the same preset trained with ``causal: true``.
Those presets are therefore covered in their causal variant, where that variant streams. That
includes the two-talker separation presets (``dprnn-tasnet``, ``groupcomm-k*``: two output
sources), which stream every source (``[S, hop]`` per step); there is no tiny separation preset,
so the fast-preset rule above decides which of them run (all twelve: at most 2.6 M weights).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from leanse.models import MODEL_REGISTRY, build_model, model_presets
from test_models_contract import FAST_PRESETS


def _streaming_variant(name: str) -> dict[str, Any] | None:
    """The overrides under which preset ``name`` streams (``{}`` as registered), or None."""
    family = MODEL_REGISTRY[model_presets()[name]["name"]]
    candidates: list[dict[str, Any]] = [{}]
    if "causal" in inspect.signature(family).parameters:
        candidates.append({"causal": True})
    for overrides in candidates:
        with torch.device("meta"):  # streamability depends on the config only: no weights needed
            model = build_model({"preset": name, **overrides})
        if model.not_streamable_reason() is None:
            return overrides
    return None


def _streamable() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name in FAST_PRESETS:
        overrides = _streaming_variant(name)
        if overrides is not None:
            found.append((name, overrides))
    return found + OPTION_VARIANTS


#: options that no registered preset uses, but a config may: GRU with log-power features, and a
#: mask floored by an attenuation limit (its own test: tests/test_attenuation_limit.py)
OPTION_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("tiny-mask-rnn", {"rnn_type": "gru", "features": "log_power"}),
    ("tiny-mask-rnn", {"attenuation_limit_db": 12.0}),
]


#: (preset, overrides) of every streamable preset (see the module docstring).
STREAMABLE: list[tuple[str, dict[str, Any]]] = _streamable()
IDS = [p + "".join(f"-{k}={v}" for k, v in o.items()) for p, o in STREAMABLE]


def family(preset: str, overrides: dict[str, Any]) -> str:
    """The model class a (preset, overrides) pair builds (registry name)."""
    return str({**model_presets()[preset], **overrides}["name"])


def separates(preset: str, overrides: dict[str, Any]) -> bool:
    """A separation model: more than one output source."""
    return int({**model_presets()[preset], **overrides}.get("num_sources", 1)) > 1


#: One (preset, overrides) per model family and task (enhancement / separation) -- the smallest
#: ``tiny-*`` one where there is one -- on which the slower checks (every feed pattern) run; the
#: rest run one feed pattern.
REPRESENTATIVES: set[str] = set()
for _kind in sorted({(family(p, o), separates(p, o)) for p, o in STREAMABLE}):
    _members = [i for i, (p, o) in zip(IDS, STREAMABLE) if (family(p, o), separates(p, o)) == _kind]
    REPRESENTATIVES.add(next((i for i in _members if i.startswith("tiny-")), _members[0]))
REPRESENTATIVES.add(IDS[len(IDS) - len(OPTION_VARIANTS)])  # the first option variant


def is_ensemble(preset: str, overrides: dict[str, Any]) -> bool:
    """A gate + specialists model (streams with a Python dispatcher, exports as several graphs)."""
    return family(preset, overrides) == "sparse_ensemble"


def pin_gate(model: nn.Module, specialist: int) -> None:
    """Make a hard-gated ensemble's gate always choose ``specialist`` (a large bias on its logit).

    Online, the gate re-decides every few frames from the frames so far; offline it decides once
    for the whole utterance (000 eq. 3). With random weights the two may differ, and then the
    stream is *not* the offline output by design (the module docstring of
    :mod:`leanse.ensemble.streaming`). With the choice pinned they must agree exactly, which
    checks the shared front end, the routing of states and the chosen specialist's stream.
    """
    from leanse.ensemble.streaming import _gate_parts

    _, head = _gate_parts(model.gate)
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias.zero_()
        last.bias[specialist] = 50.0  # the other logits are O(1): hidden in [-1, 1], small weights


def build(preset: str, overrides: dict[str, Any], pinned_gate: bool = True) -> nn.Module:
    """The model with seeded random weights, in eval mode; an ensemble's gate pinned to its last
    specialist (so a non-zero index is routed) unless ``pinned_gate`` is False."""
    torch.manual_seed(0)
    model = build_model({"preset": preset, **overrides}).eval()
    if pinned_gate and hasattr(model, "specialists") and hasattr(model, "gate"):
        pin_gate(model, len(model.specialists) - 1)
    return model

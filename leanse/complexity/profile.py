"""Everything a report needs about a model's cost in one dict, and reductions between models."""

from __future__ import annotations

from typing import Any

from torch import nn

from leanse.complexity.counting import _noise, model_bytes, trace_cost
from leanse.complexity.runtime import measure_rtf


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

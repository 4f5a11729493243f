"""The one model interface and the registry that rebuilds models from configs.

Every leanse model is an :class:`EnhancementModel`: it maps a waveform batch ``[B, T]`` to an
estimate ``[B, T]`` (separation models: ``[B, S, T]``) at its own ``sample_rate``, and it can be
rebuilt from ``model.config`` -- a plain dict ``{"name": ..., **hyper_parameters}`` -- which is what a
checkpoint stores beside the weights.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

import torch
from torch import nn

from leanse.errors import LeanseError
from leanse.models.streaming import StreamingMixin
from leanse.registry import add_preset, build_registered, registering

MODEL_REGISTRY: dict[str, type["EnhancementModel"]] = {}
#: Named presets: the architectures of the papers (``paper``) and small ones for tests (``tiny``).
PRESETS: dict[str, dict[str, Any]] = {}

#: Modules outside :mod:`leanse.models` that register models. They import ``leanse.models`` (the
#: sparse ensemble is built from its specialists), so ``leanse.models`` must not import them while
#: it is being imported; lookups import them on first use instead, as DeepFilterNet's
#: ``df/model.py`` dispatches with ``import_module``. Dependencies point one way:
#: ``leanse.ensemble`` -> ``leanse.models``.
MODEL_PLUGINS = ("leanse.ensemble.sparse",)


def load_model_plugins() -> None:
    """Import every module of :data:`MODEL_PLUGINS`, so the registries hold every model."""
    for name in MODEL_PLUGINS:
        importlib.import_module(name)


def model_presets() -> dict[str, dict[str, Any]]:
    """Every registered preset, the ensembles' included: ``{name: config}``."""
    load_model_plugins()
    return PRESETS


class EnhancementModel(StreamingMixin, nn.Module):
    """Base class: waveform in, waveform out, rebuildable from :attr:`config`.

    Subclasses call ``super().__init__(sample_rate)`` and keep their constructor arguments JSON
    serialisable; :attr:`config` is derived from the constructor's signature.

    Streaming (:mod:`leanse.models.streaming`): ``init_state`` / ``step`` / ``streamable``; a
    model that cannot stream says why in :meth:`not_streamable_reason`.
    """

    #: Number of output sources: 1 for enhancement, S for separation.
    num_sources: int = 1

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)

    @property
    def config(self) -> dict[str, Any]:
        """``{"name": registered name, **constructor arguments}``."""
        params = inspect.signature(type(self).__init__).parameters
        config = {"name": type(self).registered_name}
        for key in params:
            if key == "self":
                continue
            config[key] = getattr(self, key)
        return config

    registered_name: str = ""

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def register_model(name: str) -> Callable[[type[EnhancementModel]], type[EnhancementModel]]:
    """Class decorator: make ``build_model({"name": name, ...})`` construct this class."""

    return registering(MODEL_REGISTRY, name, "model")


def register_preset(name: str, config: dict[str, Any]) -> None:
    """Add a named architecture (``leanse profile NAME``, ``model: {preset: NAME}`` in recipes)."""
    add_preset(PRESETS, name, config, "model")


def build_model(config: dict[str, Any] | str) -> EnhancementModel:
    """Construct a model from a config dict or a preset name.

    A dict may be ``{"preset": NAME, **overrides}`` or ``{"name": MODEL, **arguments}``. Unknown
    names and arguments raise :class:`ConfigError` naming the offending key.
    """
    load_model_plugins()
    return build_registered(config, MODEL_REGISTRY, PRESETS, "model")


def check_source(model: torch.nn.Module, source: int | None) -> int:
    """Validate the ``--source`` choice for ``model`` and return its number of outputs.

    A separation model (``num_sources > 1``) needs one output chosen for single-signal uses
    (enhancing a file, scoring against one clean reference); an enhancement model needs none.
    """
    num_sources = int(getattr(model, "num_sources", 1))
    if num_sources > 1:
        if source is None:
            raise LeanseError(
                f"this is a separation model with {num_sources} outputs; choose one with --source"
                f" (0..{num_sources - 1})"
            )
        if not 0 <= source < num_sources:
            raise LeanseError(f"--source {source} is out of range: the model has {num_sources} outputs"
                              f" (0..{num_sources - 1})")
    return num_sources


def run_enhancement(model: torch.nn.Module, wav: torch.Tensor, source: int | None = None,
                    **forward_kwargs: Any) -> torch.Tensor:
    """``model(wav)`` without gradients as an enhancer: ``[B, T]`` -> ``[B, T]``, keeping output
    ``source`` of a separation model (``[B, S, T]``); any other output shape is refused.

    The one place ``leanse enhance`` and ``leanse evaluate`` run a model on audio.
    """
    num_sources = check_source(model, source)
    with torch.no_grad():
        out = model(wav, **forward_kwargs)  # [B, T] or [B, S, T]
    if num_sources > 1:
        out = out[:, source]  # [B, T]
    if out.shape != wav.shape:
        raise LeanseError(
            f"the model returned shape {tuple(out.shape)} for input {tuple(wav.shape)}; an"
            " enhancement model must map [B, T] to [B, T]"
        )
    return out

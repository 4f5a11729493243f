"""Building objects from configs through a name registry: one rule for models and gates.

It lives outside :mod:`leanse.models` so that gate modules (:mod:`leanse.ensemble.gates`) use it
without importing the model package.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)

from leanse.errors import ConfigError


def build_registered(
    config: dict[str, Any] | str, registry: dict[str, type], presets: dict[str, dict[str, Any]], kind: str
) -> Any:
    """Resolve a preset name or ``{"preset" | "name": ..., **arguments}`` against a registry and
    construct it, refusing unknown names and arguments (shared by models and gates)."""
    if isinstance(config, str):
        config = {"preset": config}
    if not isinstance(config, dict):
        raise ConfigError(f"a {kind} config must be a dict or a preset name, not {type(config).__name__}")
    config = dict(config)
    if "preset" in config:
        preset = config.pop("preset")
        if preset not in presets:
            raise ConfigError(
                f"unknown {kind} preset {preset!r}; known {kind} presets: {', '.join(sorted(presets))}"
            )
        config = {**presets[preset], **config}
    name = config.pop("name", None)
    if name not in registry:
        raise ConfigError(f"unknown {kind} name {name!r}; known {kind}s: {', '.join(sorted(registry))}")
    cls = registry[name]
    accepted = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{kind} {name!r} has no option {unknown[0]!r}; its options are: {', '.join(accepted)}"
        )
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{kind} {name!r}: {err}") from None


def registering(registry: dict[str, type], name: str, kind: str) -> Callable[[T], T]:
    """Class decorator: ``registry[name] = cls`` (and ``cls.registered_name = name``), once."""

    def decorate(cls: T) -> T:
        if name in registry:
            raise ValueError(f"{kind} name {name!r} registered twice")
        cls.registered_name = name
        registry[name] = cls
        return cls

    return decorate


def add_preset(presets: dict[str, dict[str, Any]], name: str, config: dict[str, Any], kind: str) -> None:
    """``presets[name] = config``, once."""
    if name in presets:
        raise ValueError(f"{kind} preset {name!r} registered twice")
    presets[name] = dict(config)

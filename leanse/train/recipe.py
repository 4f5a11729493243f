"""Recipes: a YAML file that says which model to train on which data, and how.

A recipe is read top to bottom by :func:`run_recipe`: build the data, build the model, train it with
the one engine, score it on the fixed test list, enhance a demo file and write the report. The
``paper`` recipes carry the papers' hyper-parameters; ``tiny`` recipes shrink them to run in
minutes on two CPU cores. ``key=value`` overrides on the command line change any field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from leanse.config import apply_overrides, from_dict, load_yaml, to_dict
from leanse.data.datamodule import DataConfig, Mixers
from leanse.errors import ConfigError
from leanse.models import build_model
from leanse.train.engine import TrainConfig
from leanse.train.runner import fit_mixtures, run_stage


@dataclass
class EvaluateConfig:
    workers: int = 2
    enhance_examples: int = 1  # test mixtures written as noisy / enhanced / clean wavs


@dataclass
class Recipe:
    name: str = "run"
    kind: str = "single"  # single model; multi-stage recipes name their orchestration here
    out_dir: str | None = None  # default: runs/<name>
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny-mask-rnn"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    stages: dict[str, Any] = field(default_factory=dict)  # options of multi-stage recipes
    compress: dict[str, Any] = field(default_factory=dict)  # `leanse compress` options (004)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.name}")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, apply ``key=value`` overrides, check every key and type."""
    data = apply_overrides(load_yaml(path), overrides or [])
    data.setdefault("name", Path(path).stem)
    return from_dict(Recipe, data)


def save_recipe(recipe: Recipe, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))


def warm_start(model: torch.nn.Module, source: str) -> None:
    """Copy the weights of checkpoint ``source`` into ``model`` (``train.init_from``).

    The checkpoint must hold the same architecture: a differing model config is refused with both
    configs named, so a fine-tuning run never starts from weights that only half fit.
    """
    from leanse.checkpoint import load_checkpoint

    donor = load_checkpoint(source)
    if donor.config != model.config:
        raise ConfigError(
            f"train.init_from: {source} holds a different model ({donor.config}) than the recipe's "
            f"({model.config}); make recipe.model equal to the checkpoint's model config"
        )
    model.load_state_dict(donor.state_dict())


def train_model(recipe: Recipe, mixers: Mixers, run_dir: Path | None = None, model_config: dict | None = None) -> Path:
    """Train one model of the recipe on its data; returns the best checkpoint folder.

    The weights are initialised from ``train.seed`` (the same seed, the same model). A stage whose
    ``best/`` checkpoint exists and whose state is complete is not trained again.
    """
    run_dir = run_dir or recipe.run_dir

    def train() -> Path:
        torch.manual_seed(recipe.train.seed)
        model = build_model(model_config or recipe.model)
        if model.sample_rate != recipe.data.sample_rate:
            raise ConfigError(
                f"model runs at {model.sample_rate} Hz but data.sample_rate is {recipe.data.sample_rate}; make them equal"
            )
        if recipe.train.init_from:
            warm_start(model, recipe.train.init_from)
        return fit_mixtures(recipe, model, mixers, recipe.train, run_dir)

    return run_stage(run_dir, train)

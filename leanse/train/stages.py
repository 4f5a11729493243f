"""Which orchestration a recipe runs: ``kind`` -> the function that reads like the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from leanse.errors import ConfigError
from leanse.train.recipe import Recipe, save_recipe, train_model


def _single_run(recipe: Recipe) -> Any:
    from leanse.train.single import run_single

    return run_single(recipe)


def _single_train(recipe: Recipe) -> Path:
    from leanse.data.datamodule import build_mixers
    from leanse.data.mixing import write_specs

    save_recipe(recipe, recipe.run_dir / "recipe.yaml")
    mixers = build_mixers(recipe.data)
    write_specs(recipe.run_dir / "test_list.csv", mixers.test_specs)
    return train_model(recipe, mixers)


def _ensemble_train(recipe: Recipe) -> Path:
    from leanse.train.ensembles import train_ensemble_recipe

    return train_ensemble_recipe(recipe)


def _ensemble_run(recipe: Recipe) -> Any:
    from leanse.train.ensembles import run_ensemble_recipe

    return run_ensemble_recipe(recipe)


def _groupcomm_train(recipe: Recipe) -> Path:
    from leanse.train.groupcomm import train_groupcomm

    train_groupcomm(recipe)
    return recipe.run_dir


def _groupcomm_run(recipe: Recipe) -> Any:
    from leanse.train.groupcomm import run_groupcomm

    return run_groupcomm(recipe)


def _bloom_train(recipe: Recipe) -> Path:
    from leanse.train.bloom import train_bloom

    train_bloom(recipe)
    return recipe.run_dir


def _bloom_run(recipe: Recipe) -> Any:
    from leanse.train.bloom import run_bloom

    return run_bloom(recipe)


#: kind -> (train only, the whole run). Multi-stage methods register here.
KINDS: dict[str, tuple[Callable[[Recipe], Path], Callable[[Recipe], Any]]] = {
    "single": (_single_train, _single_run),
    # Sparse ensembles of specialists (leanse.train.ensembles): papers 000 and 001.
    "smole_snr": (_ensemble_train, _ensemble_run),
    "smole_gender": (_ensemble_train, _ensemble_run),
    "speaker_moe": (_ensemble_train, _ensemble_run),
    # Paper 002: DPRNN-TasNet and GroupComm-DPRNN-TasNet rows (leanse.train.groupcomm).
    "groupcomm": (_groupcomm_train, _groupcomm_run),
    # Paper 003: Baseline 1 Full / Int., Baseline 2, BLOOM, BLOOM-FT (leanse.train.bloom).
    "bloom": (_bloom_train, _bloom_run),
}


def _kind(recipe: Recipe) -> tuple[Callable, Callable]:
    if recipe.kind not in KINDS:
        raise ConfigError(f"kind: unknown recipe kind {recipe.kind!r}; known: {', '.join(KINDS)}")
    return KINDS[recipe.kind]


def train_recipe(recipe: Recipe) -> Path:
    return _kind(recipe)[0](recipe)


def run_recipe(recipe: Recipe) -> Any:
    return _kind(recipe)[1](recipe)

"""Which orchestration a recipe runs, and the typed ``stages:`` section of each recipe kind.

``kind`` -> the function that reads like the paper (:data:`KINDS`), and ``kind`` -> the dataclass
its ``stages:`` section must parse into (:data:`STAGES`). :func:`recipe_stages` checks the whole
section -- every key, every type and every stage's ``train`` overrides, however deep -- so a typo
in ``stages.finetune.train`` fails when the recipe is read, not after hours of earlier stages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from leanse.config import from_dict, to_dict
from leanse.data.two_talker import TwoTalkerOptions
from leanse.errors import ConfigError
from leanse.train.engine import TrainConfig
from leanse.train.recipe import Recipe, save_recipe, train_model

# ================================================================================================
# The ``stages:`` section of every recipe kind (checked key by key, like the rest of a recipe)
# ================================================================================================


@dataclass
class StageTrain:
    """A stage that only changes how it trains."""

    train: dict[str, Any] = field(default_factory=dict)  # overrides of the recipe's train section


@dataclass
class GateStage:
    model: dict[str, Any] = field(default_factory=dict)  # gate config or {preset: ...}
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the recipe's train section


@dataclass
class FineTuneStage:
    scale: float = 10.0  # lambda of 000 eq. 5 ("base e^10" in 001 Sec. 2.6)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class SiameseStage:
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "speaker-embed-32x2-8k"})
    train: dict[str, Any] = field(default_factory=dict)
    pairs_per_epoch: int = 2000
    valid_pairs: int = 200


@dataclass
class NoStages:
    """A single-model recipe has no stages: its ``stages:`` section must be empty."""


@dataclass
class SmoleStages:
    """000: ``partition`` lists one value per specialist: the SNRs in dB (equal to ``data.snrs``,
    whose order is the gate's class order) or ``[M, F]``."""

    partition: list[Any] = field(default_factory=list)
    sizes: list[dict[str, Any]] = field(default_factory=list)
    gate: GateStage = field(default_factory=GateStage)
    finetune: FineTuneStage = field(default_factory=FineTuneStage)


@dataclass
class SpeakerStages:
    """001: ``ks`` lists the numbers of speaker groups to build (2, 5, 10 in the paper)."""

    ks: list[int] = field(default_factory=lambda: [2, 5, 10])
    sizes: list[dict[str, Any]] = field(default_factory=list)
    siamese: SiameseStage = field(default_factory=SiameseStage)
    classifier: StageTrain = field(default_factory=StageTrain)
    finetune: FineTuneStage = field(default_factory=lambda: FineTuneStage(train={"lr": 1e-4}))
    tsne_perplexity: float = 40.0  # 001 Sec. 2.3


@dataclass
class GroupCommStages:
    """002: the two-talker mixing and the GroupComm rows trained beside the baseline ``model``."""

    mixing: TwoTalkerOptions = field(default_factory=TwoTalkerOptions)
    rows: list[dict[str, Any]] = field(default_factory=list)  # model configs besides the baseline
    profile_seconds: float = 4.0  # 002 Table 2 counts MACs on 4-second inputs
    threads: int | None = None  # torch threads while training / scoring (None: leave torch's default)


@dataclass
class BloomStages:
    """003: per-scheme training overrides."""

    baseline1: StageTrain = field(default_factory=StageTrain)
    baseline2: StageTrain = field(default_factory=StageTrain)
    bloom: StageTrain = field(default_factory=StageTrain)
    finetune: StageTrain = field(default_factory=StageTrain)
    profile_seconds: float = 1.0  # 003 Table 2: MACs on 1-second inputs
    threads: int | None = None  # torch threads while training / scoring (None: leave torch's default)


#: kind -> the dataclass of its ``stages:`` section.
STAGES: dict[str, type] = {
    "single": NoStages,
    "smole_snr": SmoleStages,
    "smole_gender": SmoleStages,
    "speaker_moe": SpeakerStages,
    "groupcomm": GroupCommStages,
    "bloom": BloomStages,
}


def stage_train_config(base: TrainConfig, overrides: dict[str, Any], where: str) -> TrainConfig:
    """The recipe's ``train`` section with one stage's overrides on top, checked key by key."""
    return from_dict(TrainConfig, {**to_dict(base), **overrides}, where)


def recipe_stages(recipe: Recipe) -> Any:
    """``recipe.stages`` parsed into its kind's dataclass, every stage's ``train`` overrides checked."""
    stages = from_dict(STAGES[_checked_kind(recipe)], recipe.stages, "stages")
    _check_train_overrides(recipe.train, stages, "stages")
    return stages


def _check_train_overrides(base: TrainConfig, section: Any, where: str) -> None:
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        if item.name == "train" and isinstance(value, dict):
            stage_train_config(base, value, f"{where}.train")
        elif dataclasses.is_dataclass(value):
            _check_train_overrides(base, value, f"{where}.{item.name}")


def _checked_kind(recipe: Recipe) -> str:
    if recipe.kind not in KINDS:
        raise ConfigError(f"kind: unknown recipe kind {recipe.kind!r}; known: {', '.join(KINDS)}")
    return recipe.kind


# ================================================================================================
# Which orchestration each kind runs
# ================================================================================================


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
    recipe_stages(recipe)  # every stage's settings are checked before anything trains
    return KINDS[recipe.kind]


def train_recipe(recipe: Recipe) -> Path:
    return _kind(recipe)[0](recipe)


def run_recipe(recipe: Recipe) -> Any:
    return _kind(recipe)[1](recipe)

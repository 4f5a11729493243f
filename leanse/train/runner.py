"""The one stage runner: "train this stage into this folder, unless it is done".

Every recipe kind is a sequence of stages, each in its own folder. A stage is *done* when its folder
holds the exported best checkpoint (``best/``) and the ``done`` marker written after training
returned; a killed run therefore re-runs only the stages that did not finish (and those resume
from their own ``lightning/last.ckpt``). Single-model recipes, the ensembles of 000/001,
GroupComm (002), BLOOM-Net (003) -- and the compression pipelines next -- all go through
:func:`run_stage`; most stages train on mixture datasets with :func:`fit_mixtures`.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from leanse.data.datamodule import Mixers, MixtureDataset
from leanse.data.mixing import write_specs
from leanse.train.engine import BEST, TrainConfig, fit

if TYPE_CHECKING:
    from leanse.train.recipe import Recipe

DONE = "done"


def is_done(folder: Path) -> bool:
    """A stage folder whose training finished: ``best/`` and the ``done`` marker."""
    return (folder / BEST).is_dir() and (folder / DONE).is_file()


def mark_done(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def run_stage(folder: Path, train: Callable[[], Any]) -> Path:
    """Run ``train()`` (which writes ``folder/best``) unless the stage is done; then mark it done.

    Returns the stage's best checkpoint folder either way.
    """
    folder = Path(folder)
    if not is_done(folder):
        train()
        mark_done(folder)
    return folder / BEST


def fit_mixtures(recipe: "Recipe", model: torch.nn.Module, mixers: Mixers, config: TrainConfig, folder: Path,
                 task: Any = None, meta: dict[str, Any] | None = None) -> Path:
    """Train ``model`` on the recipe's mixtures (fresh ones each epoch, the fixed validation list).

    Writes ``valid_list.csv`` beside the checkpoint; ``task`` replaces the default enhancement task.
    """
    data = recipe.data
    write_specs(folder / "valid_list.csv", mixers.valid_specs)
    return fit(
        model,
        MixtureDataset(mixers.train, size=data.examples_per_epoch, seed=data.seed),
        MixtureDataset(mixers.valid, specs=mixers.valid_specs),
        config,
        folder,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        valid_batch_size=data.batch_size if data.eval_segment_seconds else 1,
        meta={"recipe": recipe.name, **(meta or {})},
        task=task,
    )


def epochs_trained(folder: Path) -> int:
    """Validation epochs a stage ran (from its CSV log): shows when a time budget cut one short."""
    log = folder / "logs" / "metrics.csv"
    if not log.is_file():
        return 0
    with log.open() as handle:
        return sum(1 for row in csv.DictReader(handle) if row.get("val_loss"))

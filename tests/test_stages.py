"""Every recipe kind's ``stages:`` section is typed and checked before anything trains, and the
one stage runner skips finished stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from leanse.errors import ConfigError
from leanse.train.recipe import load_recipe
from leanse.train.runner import DONE, is_done, run_stage
from leanse.train.stages import KINDS, STAGES, recipe_stages, run_recipe, train_recipe

RECIPES = Path(__file__).parent.parent / "recipes"

#: kind -> (a tiny recipe of that kind, an override with a typo deep in its stages, the key named).
TYPOS = {
    "single": ("mask_rnn/tiny.yaml", "stages.finetune.train.lr=0.1", "finetune"),
    "smole_snr": ("smole_snr/tiny.yaml", "stages.finetune.train.lrr=0.1", "lrr"),
    "smole_gender": ("smole_gender/tiny.yaml", "stages.gate.train.max_epoch=3", "max_epoch"),
    "speaker_moe": ("speaker_moe/tiny.yaml", "stages.siamese.train.optimiser=adam", "optimiser"),
    "groupcomm": ("groupcomm/tiny.yaml", "stages.mixing.room.t6O=[0.2,0.5]", "t6O"),
    "bloom": ("bloom/tiny.yaml", "stages.finetune.train.lrr=0.1", "lrr"),
}


def test_every_kind_has_a_stages_table_and_a_typo_case():
    assert set(STAGES) == set(KINDS) == set(TYPOS)


@pytest.mark.parametrize("kind", sorted(TYPOS))
@pytest.mark.parametrize("entry", [run_recipe, train_recipe], ids=["run", "train"])
def test_a_typo_deep_in_stages_fails_before_anything_trains(kind, entry, tmp_path):
    path, override, key = TYPOS[kind]
    recipe = load_recipe(RECIPES / path, [override, f"out_dir={tmp_path / 'run'}"])
    assert recipe.kind == kind
    with pytest.raises(ConfigError, match=key):
        entry(recipe)
    assert not (tmp_path / "run").exists()  # no stage ran, nothing was written


@pytest.mark.parametrize("kind", sorted(TYPOS))
def test_the_shipped_tiny_recipes_parse_into_their_kinds_stages(kind):
    recipe = load_recipe(RECIPES / TYPOS[kind][0])
    assert isinstance(recipe_stages(recipe), STAGES[kind])


def test_run_stage_trains_once_and_skips_a_done_stage(tmp_path):
    calls = []

    def train():
        calls.append(1)
        (tmp_path / "stage" / "best").mkdir(parents=True)

    best = run_stage(tmp_path / "stage", train)
    assert best == tmp_path / "stage" / "best" and is_done(tmp_path / "stage")
    assert run_stage(tmp_path / "stage", train) == best and len(calls) == 1


def test_a_stage_killed_before_done_runs_again(tmp_path):
    (tmp_path / "stage" / "best").mkdir(parents=True)  # best/ of an epoch, but training never returned
    calls = []
    run_stage(tmp_path / "stage", lambda: calls.append(1))
    assert calls == [1] and (tmp_path / "stage" / DONE).is_file()

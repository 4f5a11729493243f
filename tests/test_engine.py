"""The one training engine: it learns, resumes after a kill, and trains data-parallel (DDP)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from leanse.checkpoint import load_checkpoint
from leanse.data.datamodule import build_mixers
from leanse.train.recipe import load_recipe, train_model



def _recipe(tmp_path: Path, corpus_root: Path, **train) -> Path:
    recipe = {
        "name": "engine-test",
        "out_dir": str(tmp_path / "run"),
        "model": {"preset": "tiny-mask-rnn"},
        "data": {"corpus": "librispeech", "root": str(corpus_root), "snrs": [0, 5],
                 "examples_per_epoch": 32, "valid_size": 4, "test_size": 4, "batch_size": 8},
        "train": {"max_epochs": 2, "accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1, **train},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _leanse(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leanse.cli", *args], capture_output=True, text=True, **kwargs)


def test_training_lowers_the_validation_loss_and_exports_a_safetensors_checkpoint(tmp_path, corpus_root):
    recipe = load_recipe(_recipe(tmp_path, corpus_root, max_epochs=4, lr=0.003))
    best = train_model(recipe, build_mixers(recipe.data))
    assert (best / "model.safetensors").is_file()
    model = load_checkpoint(best)
    assert model.config["hidden_size"] == 64
    rows = [line.split(",") for line in (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()]
    header = rows[0]
    val = [float(r[header.index("val_loss")]) for r in rows[1:] if r[header.index("val_loss")]]
    assert len(val) == 4 and min(val[1:]) < val[0]
    assert model.checkpoint_meta["val_loss"] == pytest.approx(min(val), abs=1e-4)


def test_a_finished_stage_is_not_trained_again(tmp_path, corpus_root):
    recipe = load_recipe(_recipe(tmp_path, corpus_root, max_epochs=1))
    mixers = build_mixers(recipe.data)
    best = train_model(recipe, mixers)
    stamp = (best / "model.safetensors").stat().st_mtime_ns
    assert train_model(recipe, mixers) == best
    assert (best / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_killed_run_resumes_where_it_stopped(tmp_path, corpus_root):
    path = _recipe(tmp_path, corpus_root, max_epochs=1000, checkpoint_every_steps=2, trace=True)
    state = tmp_path / "run" / "lightning" / "last.ckpt"
    process = subprocess.Popen([sys.executable, "-m", "leanse.cli", "train", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not state.exists():
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists(), "no resumable state was written before the kill"
    # Our own run's state file: trusted, so a full load is fine here.
    killed_at = torch.load(state, weights_only=False)["global_step"]
    assert killed_at >= 2
    result = _leanse("train", str(path), f"train.max_steps={killed_at + 3}", timeout=300)
    assert result.returncode == 0, result.stderr
    trace = json.loads((tmp_path / "run" / "trace-rank0.json").read_text())
    assert len(trace["ids"]) == 3 * 8, "the resumed run should only train the 3 missing steps"
    assert torch.load(state, weights_only=False)["global_step"] == killed_at + 3


def test_ddp_on_two_cpu_processes_splits_the_data_and_keeps_weights_identical(tmp_path, corpus_root):
    path = _recipe(tmp_path, corpus_root, max_epochs=1, devices=2, strategy="ddp", trace=True)
    result = _leanse("train", str(path), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [json.loads((tmp_path / "run" / f"trace-rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["ids"]) == len(ranks[1]["ids"]) == 16
    assert not set(ranks[0]["ids"]) & set(ranks[1]["ids"]), "both ranks saw the same mixtures"
    assert ranks[0]["weights_checksum"] == ranks[1]["weights_checksum"]


class _ScriptedValidation:
    """A task whose validation loss is scripted per epoch (good first, then worse)."""

    @staticmethod
    def make(model, config, losses):
        from leanse.train.engine import EnhancementTask

        class Task(EnhancementTask):
            def validation_step(self, batch, batch_idx):
                self.compute_loss(batch)  # the real forward pass, then the scripted value
                self.log("val_loss", torch.tensor(losses[self.current_epoch]), batch_size=len(batch["noisy"]))

        return Task(model, config)


def test_a_resumed_run_keeps_the_best_checkpoint_of_before_the_kill(tmp_path, corpus_root):
    """Kill after a good epoch, resume into worse epochs: best/ keeps the good one."""
    from leanse.checkpoint import read_checkpoint_config
    from leanse.data.datamodule import MixtureDataset
    from leanse.models import build_model
    from leanse.train.engine import fit

    recipe = load_recipe(_recipe(tmp_path, corpus_root))
    mixers = build_mixers(recipe.data)
    losses = [1.0, 5.0, 7.0]  # epoch 0 is the best; the resumed epochs are worse
    run_dir = tmp_path / "run"

    def train(max_epochs: int) -> Path:
        model = build_model(recipe.model)
        config = recipe.train.__class__(**{**recipe.train.__dict__, "max_epochs": max_epochs})
        return fit(model, MixtureDataset(mixers.train, size=16, seed=0),
                   MixtureDataset(mixers.valid, specs=mixers.valid_specs), config, run_dir, batch_size=8,
                   task=_ScriptedValidation.make(model, config, losses))

    best = train(max_epochs=1)  # the "kill": the run ends after its good epoch, state on disk
    weights = (best / "model.safetensors").read_bytes()
    assert read_checkpoint_config(best)["meta"]["epoch"] == 0
    train(max_epochs=3)  # resumes from lightning/last.ckpt into two worse epochs
    meta = read_checkpoint_config(best)["meta"]
    assert meta["epoch"] == 0 and meta["val_loss"] == pytest.approx(1.0)
    assert (best / "model.safetensors").read_bytes() == weights
    # The worse epochs did run, and the resumable state carries the best loss forward.
    state = torch.load(run_dir / "lightning" / "last.ckpt", weights_only=False)  # our own file
    assert state["epoch"] == 2
    assert [v for k, v in state["callbacks"].items() if k.startswith("ExportBest")] == [{"best": 1.0}]


def test_a_run_that_is_not_on_a_terminal_logs_one_line_per_epoch(tmp_path, corpus_root):
    """CI and ``| tee log``: no progress-bar frames (carriage returns), one line per epoch."""
    path = _recipe(tmp_path, corpus_root, max_epochs=2, progress_bar=True)
    result = _leanse("train", str(path), timeout=300)  # stdout / stderr are pipes, not a terminal
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("val_loss" in line and "train_loss" in line for line in lines)


def test_the_same_seed_trains_the_same_model(tmp_path, corpus_root):
    """train.seed seeds the weights' initialisation too (it used to seed only the training loop, so
    two runs of one single-model recipe started from different weights)."""
    weights = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        recipe = load_recipe(_recipe(tmp_path / run, corpus_root, max_epochs=1, max_steps=2))
        best = train_model(recipe, build_mixers(recipe.data))
        weights.append((best / "model.safetensors").read_bytes())
    assert weights[0] == weights[1]


def test_a_warm_started_run_begins_from_the_donor_weights_and_refuses_another_architecture(tmp_path, corpus_root):
    from leanse.checkpoint import save_checkpoint
    from leanse.errors import ConfigError
    from leanse.models import build_model
    from leanse.train.recipe import warm_start

    torch.manual_seed(123)
    donor = build_model({"preset": "tiny-mask-rnn"})
    save_checkpoint(donor, tmp_path / "donor")
    recipe = load_recipe(_recipe(tmp_path, corpus_root, max_epochs=1, lr=1e-12, init_from=str(tmp_path / "donor")))
    trained = load_checkpoint(train_model(recipe, build_mixers(recipe.data)))
    # A learning rate of 1e-12 leaves the weights where they started: the donor's, not the seed's.
    for name, tensor in donor.state_dict().items():
        torch.testing.assert_close(trained.state_dict()[name], tensor, atol=1e-6, rtol=0)
    torch.manual_seed(recipe.train.seed)  # what the run would have started from without init_from
    fresh = build_model({"preset": "tiny-mask-rnn"})
    assert not torch.equal(fresh.state_dict()["dense.weight"], donor.state_dict()["dense.weight"])

    other = build_model({**donor.config, "hidden_size": 32})
    with pytest.raises(ConfigError, match="init_from.*different model"):
        warm_start(other, str(tmp_path / "donor"))

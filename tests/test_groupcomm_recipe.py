"""The groupcomm recipe (paper 002): PIT training and scoring, tiny and paper runs, bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.cli import main
from leanse.losses import PIT_LOSSES, PITLossWrapper, si_sdr, snr
from leanse.metrics import si_sdr as np_si_sdr
from leanse.models import build_model
from leanse.train.groupcomm import score_separation

RECIPES = Path(__file__).parent.parent / "recipes" / "groupcomm"


# ------------------------------------------------------------------------------------------------
# Permutation-invariant training and scoring


def test_pit_loss_does_not_care_about_the_output_order():
    torch.manual_seed(0)
    targets = torch.randn(3, 2, 400)
    estimates = targets + 0.3 * torch.randn(3, 2, 400)
    swapped = estimates.flip(1)
    for name, metric in (("snr", snr), ("si_sdr", si_sdr)):
        pit_loss = PIT_LOSSES[name]
        in_order = pit_loss(estimates, targets)
        torch.testing.assert_close(pit_loss(swapped, targets), in_order)
        assert in_order == pytest.approx(-metric(estimates, targets).mean().item(), abs=1e-5)


def test_pit_picks_the_best_assignment_per_example():
    torch.manual_seed(1)
    targets = torch.randn(2, 3, 300)
    order = [(2, 0, 1), (1, 2, 0)]  # example b: estimate j = targets[order[b][j]] + noise
    estimates = torch.stack([targets[b, list(order[b])] for b in range(2)]) + 0.1 * torch.randn(2, 3, 300)
    pit = PITLossWrapper(lambda estimate, reference: -snr(estimate, reference))
    value, perm = pit.best_permutation(pit.pairwise_losses(estimates, targets))
    for b in range(2):  # perm[j] is the estimate that matches reference j
        assert [order[b][int(p)] for p in perm[b]] == [0, 1, 2]
    brute = min(
        sum(-snr(estimates[0, p[j]], targets[0, j]).item() for j in range(3)) / 3
        for p in itertools.permutations(range(3))
    )
    assert value[0].item() == pytest.approx(brute, abs=1e-4)
    assert pit(estimates, targets).item() == pytest.approx(value.mean().item())


def test_pit_loss_trains_a_separator():
    model = build_model({"preset": "tiny-groupcomm", "num_sources": 2})
    wav = torch.randn(2, 1600)
    loss = PIT_LOSSES["snr"](model(wav), torch.randn(2, 2, 1600))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_separation_scores_use_the_best_permutation():
    rng = np.random.default_rng(0)
    references = rng.standard_normal((2, 800))
    mixture = references.sum(0)
    estimates = references[::-1] + 0.01 * rng.standard_normal((2, 800))
    row = score_separation(estimates, references, mixture)
    assert row["permutation"] == "1 0"
    unprocessed = (np_si_sdr(mixture, references[0]) + np_si_sdr(mixture, references[1])) / 2
    assert row["si_sdr"] > 35 and row["si_sdr_noisy"] == pytest.approx(unprocessed) and abs(unprocessed) < 1
    assert row["si_sdri"] == pytest.approx(row["si_sdr"] - row["si_sdr_noisy"])
    assert row["si_sdr_0"] > 35 and row["si_sdr_1"] > 35


# ------------------------------------------------------------------------------------------------
# Recipes


@pytest.mark.slow
def test_tiny_recipe_trains_scores_and_reports_table2(tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [
        f"out_dir={run}", f"data.root={tmp_path / 'demo'}", "data.demo.speakers=8",
        "data.demo.utterances_per_speaker=6", "data.demo.noises_per_split=4",
        "data.examples_per_epoch=16", "data.valid_size=4", "data.test_size=4", "train.max_epochs=1",
        "train.progress_bar=false", "stages.mixing.rir_pool=3",
        "stages.rows=[{preset: tiny-groupcomm, num_sources: 2}]",
    ]
    assert main(["run", str(RECIPES / "tiny.yaml"), *overrides]) == 0
    out = capsys.readouterr().out
    assert "tiny-dprnn-tasnet" in out and "tiny-groupcomm" in out
    report = (run / "report.md").read_text()
    assert "Table 2" in report and "4 fixed 2-s two-talker mixtures at 8000 Hz" in report
    assert "synthetic" in report and "PIT on SNR" in report
    table2 = report.split("## SI-SDRi by overlap")[0]
    table = [line for line in table2.splitlines() if line.startswith("| tiny-")]
    assert len(table) == 2 and "| 1.0x |" in table[0]
    for name in ("tiny-dprnn-tasnet", "tiny-groupcomm"):
        summary = json.loads((run / "evaluation" / name / "summary.json").read_text())
        assert summary["n_files"] == 4 and math.isfinite(summary["overall"]["si_sdri"])
        assert load_checkpoint(run / name / "best").num_sources == 2
    example = sorted(p.name for p in (run / "examples").glob("*.wav"))
    assert example == [f"test-00000_{kind}.wav" for kind in
                       ("estimate0", "estimate1", "mixture", "reference0", "reference1")]
    assert sf.info(run / "examples" / "test-00000_mixture.wav").duration == pytest.approx(2.0)
    # A finished row is not trained again.
    stamp = (run / "tiny-groupcomm" / "done").stat().st_mtime_ns
    assert main(["train", str(RECIPES / "tiny.yaml"), *overrides]) == 0
    assert (run / "tiny-groupcomm" / "done").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_paper_recipe_builds_and_runs_one_step_on_librispeech_musan_trees(corpus_root, tmp_path):
    run = tmp_path / "run"
    overrides = [
        f"out_dir={run}", f"data.root={corpus_root}", f"data.noise_root={corpus_root}",
        "data.segment_seconds=0.25", "data.eval_segment_seconds=0.25", "data.examples_per_epoch=1",
        "data.batch_size=1", "data.valid_size=1", "data.test_size=2", "data.num_workers=0",
        "train.max_steps=1", "train.max_epochs=1", "train.progress_bar=false", "train.accelerator=cpu",
        "train.devices=1",
    ]
    assert main(["run", str(RECIPES / "paper.yaml"), *overrides]) == 0
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["data"]["sample_rate"] == 16000 and recipe["train"]["lr_decay"] == 0.98
    report = (run / "report.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in report.split("## SI-SDRi by overlap")[0].splitlines()
            if line.startswith("| dprnn") or line.startswith("| groupcomm")}
    assert list(rows) == ["dprnn-tasnet", "groupcomm-k4-n128-l4", "groupcomm-k16-n128-l6",
                          "groupcomm-k16-n256-l4", "groupcomm-k32-n128-l6"]
    # 002 Table 2's size and cost columns, as the paper prints them (4-s inputs).
    columns = ["K", "M", "N", "Hi/Ho", "L", "SI-SDR", "SI-SDRi", "params", "size ratio", "MACs", "MACs ratio"]
    table = {name: dict(zip(columns, cells)) for name, cells in rows.items()}
    assert table["dprnn-tasnet"]["params"] == "2,616,065" and table["dprnn-tasnet"]["MACs"] == "22.07G"  # 22.1G
    assert table["groupcomm-k16-n128-l6"]["size ratio"] == "35.6x"
    assert table["groupcomm-k16-n128-l6"]["MACs ratio"] == "2.3x"
    assert table["groupcomm-k4-n128-l4"]["size ratio"] == "3.9x"
    assert table["groupcomm-k32-n128-l6"]["size ratio"] == "100.7x"
    assert table["groupcomm-k32-n128-l6"]["K"] == "32" and table["groupcomm-k32-n128-l6"]["Hi/Ho"] == "4/8"


# ------------------------------------------------------------------------------------------------
# Bad input: a separation checkpoint used for single-source enhancement


@pytest.fixture
def separation_checkpoint(tmp_path) -> Path:
    return save_checkpoint(build_model({"preset": "tiny-groupcomm", "num_sources": 2}), tmp_path / "sep")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_enhancing_with_a_separation_checkpoint_needs_a_source(separation_checkpoint, tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32), 8000)
    assert main(["enhance", str(wav), "-o", str(tmp_path / "out"), "--model", str(separation_checkpoint)]) == 2
    err = _one_line_error(capsys)
    assert "separation model with 2 outputs" in err and "--source" in err
    assert not (tmp_path / "out" / "in.wav").exists()
    assert main(["enhance", str(wav), "-o", str(tmp_path / "out"), "--model", str(separation_checkpoint),
                 "--source", "2"]) == 2
    assert "out of range" in _one_line_error(capsys)
    assert main(["enhance", str(wav), "-o", str(tmp_path / "out"), "--model", str(separation_checkpoint),
                 "--source", "1"]) == 0
    assert sf.info(tmp_path / "out" / "in.wav").frames == 8000


def test_evaluating_a_separation_checkpoint_needs_a_source(separation_checkpoint, corpus_root, tmp_path, capsys):
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": {"corpus": "librispeech", "root": str(corpus_root), "sample_rate": 8000,
                                             "snr_range": [-5, 10], "test_size": 2, "eval_segment_seconds": 1.0}}))
    assert main(["evaluate", str(separation_checkpoint), "--data", str(data), "--workers", "0"]) == 2
    assert "--source" in _one_line_error(capsys)


@pytest.mark.parametrize("override, message", [
    ("train.loss=mse", "separation trains on snr or si_sdr"),
    ("model={preset: tiny-dprnn-tasnet}", "set num_sources: 2"),
    ("stages.mixing.target=wet", "stages.mixing.target"),
    ("stages.rows=[{preset: tiny-groupcomm, num_sources: 2, sample_rate: 16000}]", "data.sample_rate is 8000"),
])
def test_recipe_mistakes_are_one_line_errors_before_any_training(override, message, tmp_path, capsys):
    assert main(["train", str(RECIPES / "tiny.yaml"), f"out_dir={tmp_path / 'run'}", override]) == 2
    assert message in _one_line_error(capsys)
    assert not list((tmp_path / "run").glob("*/best"))

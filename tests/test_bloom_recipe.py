"""The bloom recipe (paper 003): every training scheme on the one engine, Tables 1 and 2, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.cli import main
from leanse.errors import LeanseError
from leanse.models import build_model
from leanse.models.bloom import Cascade, OnePerDepth, SingleHeadAfter
from leanse.train.bloom import claims

RECIPES = Path(__file__).parent.parent / "recipes" / "bloom"


def _tables(report: str) -> dict[str, dict[str, list[str]]]:
    """``{"Table 1": {row: cells}, "Table 2": {...}}`` from the report's markdown."""
    tables: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in report.splitlines():
        if line.startswith("## Table"):
            current = line[3:10]
            tables[current] = {}
        elif line.startswith("## "):
            current = None
        elif current and line.startswith("| ") and not line.startswith("| method") and not line.startswith("|  |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[current][cells[0]] = cells[1:]
    return tables


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------------------------------------
# Every method as a scalable model


def test_baseline_views_run_the_depth_they_are_asked_for():
    torch.manual_seed(0)
    wav = torch.randn(2, 1200)
    full = build_model({"preset": "tiny-resnet-tasnet", "num_blocks": 3}).eval()
    ones = [build_model({"preset": "tiny-resnet-tasnet", "num_blocks": 1}).eval() for _ in range(3)]
    with torch.no_grad():
        torch.testing.assert_close(SingleHeadAfter(full)(wav, blocks=3), full(wav))
        # l < L: blocks 1..l then the one head, not the model's own output.
        assert not torch.allclose(SingleHeadAfter(full)(wav, blocks=1), full(wav))
        torch.testing.assert_close(OnePerDepth(ones)(wav, blocks=2), ones[1](wav))
        torch.testing.assert_close(Cascade(ones)(wav, blocks=2), ones[1](ones[0](wav)))
        torch.testing.assert_close(Cascade(ones)(wav), ones[2](ones[1](ones[0](wav))))


@pytest.mark.parametrize("blocks", [0, 4, -1, True])
def test_baseline_views_refuse_depths_they_do_not_have(blocks):
    view = Cascade([build_model({"preset": "tiny-resnet-tasnet", "num_blocks": 1}) for _ in range(3)])
    with pytest.raises(LeanseError, match="this model has 3 blocks; --blocks must be between 1 and 3"):
        view(torch.randn(1, 800), blocks=blocks)


def test_claims_are_checked_on_the_numbers_as_they_are():
    table = [
        {"method": "Baseline 1 - Full", "l=1": -0.6, "l=2": 0.4, "l=3": 8.0},
        {"method": "BLOOM", "l=1": 4.5, "l=2": 6.1, "l=3": 6.0},
        {"method": "BLOOM-FT", "l=1": 4.7, "l=2": 6.5, "l=3": 7.4},
    ]
    lines = claims(table)
    assert "does NOT hold" in lines[0] and "-0.10" in lines[0]  # BLOOM fell from l=2 to l=3
    assert "collapses below l = L" in lines[1] and "holds" in lines[1] and "NOT" not in lines[1]
    assert "+1.40 dB" in lines[2] and "NOT" not in lines[2]


# ------------------------------------------------------------------------------------------------
# Recipes


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("bloom")
    run = tmp / "run"
    overrides = [
        f"out_dir={run}", f"data.root={tmp / 'demo'}", "data.demo.speakers=8",
        "data.demo.utterances_per_speaker=6", "data.demo.noises_per_split=4",
        "data.examples_per_epoch=48", "data.valid_size=4", "data.test_size=4", "train.max_epochs=1",
        "train.progress_bar=false", "evaluate.workers=0",
    ]
    assert main(["run", str(RECIPES / "tiny.yaml"), *overrides]) == 0
    return run, overrides


@pytest.mark.slow
def test_tiny_recipe_reports_tables_1_and_2(tiny_run):
    run, _ = tiny_run
    report = (run / "report.md").read_text()
    tables = _tables(report)
    table1, table2 = tables["Table 1"], tables["Table 2"]
    assert list(table1) == ["Baseline 1 - Full", "Baseline 1 - Int.", "Baseline 2", "BLOOM", "BLOOM-FT"]
    assert all(len(cells) == 4 and all(math.isfinite(float(c)) for c in cells) for cells in table1.values())
    # One model serves l = 1 of Int., Baseline 2 and BLOOM (003 Table 1 prints 4.55 for all three),
    # and Baseline 1 Full at l = L is the L-block Int. model.
    assert table1["Baseline 1 - Int."][0] == table1["Baseline 2"][0] == table1["BLOOM"][0]
    assert table1["Baseline 1 - Full"][3] == table1["Baseline 1 - Int."][3]
    # Table 2: one MACs row for both; BLOOM grows by one block + exit per l, Baseline 1 by a whole model.
    assert table2["MACs/s Baseline 1"] == table2["MACs/s BLOOM"]
    assert table2["Params BLOOM"][0] == table2["Params Baseline 1 (models 1..l)"][0]
    assert "The paper's claims at this scale" in report and report.count("hold") >= 3
    assert "synthetic" in report and "4 fixed mixtures" in report
    for l in range(1, 5):
        assert sf.info(run / "examples" / f"test-00000_bloom_ft_l{l}.wav").samplerate == 8000
        assert (run / "evaluation" / "bloom" / f"l{l}" / "summary.json").is_file()
    assert (run / "blocks.png").stat().st_size > 10_000


@pytest.mark.slow
def test_tiny_recipe_stages_freeze_and_fine_tune_what_003_says(tiny_run):
    run, overrides = tiny_run
    stage = {l: load_checkpoint(run / "bloom" / f"stage{l}" / "best") for l in range(1, 5)}
    one_block = load_checkpoint(run / "baseline1" / "l1" / "best")
    # Stage 1 is the one-block model.
    assert _same_weights(stage[1].encoder, one_block.encoder)
    assert _same_weights(stage[1].maskers[0], one_block.masker)
    for l in range(2, 5):
        # Greedy stage l changed block l and its exit, and nothing trained before it.
        for earlier in (stage[l].encoder, stage[l].shared_bottleneck, *stage[l].separators[: l - 1],
                        *stage[l].maskers[: l - 1], *stage[l].decoders[: l - 1]):
            name = next(n for n, m in stage[l].named_modules() if m is earlier)
            assert _same_weights(earlier, dict(stage[l - 1].named_modules())[name]), (l, name)
        assert not _same_weights(stage[l].separators[l - 1], stage[l - 1].separators[l - 1])
        assert not _same_weights(stage[l].maskers[l - 1], stage[l - 1].maskers[l - 1])
    # BLOOM-FT updated everything, the encoder and the first exit included.
    tuned = load_checkpoint(run / "bloom_ft" / "best")
    assert not _same_weights(tuned.encoder, stage[4].encoder)
    assert not _same_weights(tuned.maskers[0], stage[4].maskers[0])
    # Baseline 2 block 1 is the one-block model; later blocks are new one-block models.
    assert not (run / "baseline2" / "block1").exists()
    assert load_checkpoint(run / "baseline2" / "block4" / "best").num_blocks == 1
    # Finished stages are kept: training again trains nothing.
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("done")}
    assert len(stamps) == 4 + 3 + 4 + 1
    assert main(["train", str(RECIPES / "tiny.yaml"), *overrides]) == 0
    assert {p: p.stat().st_mtime_ns for p in run.rglob("done")} == stamps


@pytest.mark.slow
def test_paper_recipe_builds_and_runs_one_step_on_librispeech_musan_trees(corpus_root, tmp_path):
    run = tmp_path / "run"
    overrides = [
        f"out_dir={run}", f"data.root={corpus_root}", f"data.noise_root={corpus_root}",
        "data.eval_segment_seconds=0.5", "data.examples_per_epoch=2", "data.batch_size=2", "data.valid_size=1",
        "data.test_size=1", "data.num_workers=0", "train.max_steps=1", "train.max_epochs=1",
        "train.progress_bar=false", "train.accelerator=cpu", "train.devices=1", "evaluate.workers=0",
    ]
    assert main(["run", str(RECIPES / "paper.yaml"), *overrides]) == 0
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["train"]["lr"] == 1e-4 and recipe["data"]["mixture_norm"] == "standardize"
    assert recipe["data"]["batch_size"] == 2 and recipe["model"] == {"preset": "bloom-l6"}
    tables = _tables((run / "report.md").read_text())
    assert all(len(cells) == 6 for cells in tables["Table 1"].values())
    # 003 Table 2 as printed (FIDELITY.md): MACs of separator + masker on 1 s, params per l.
    table2 = tables["Table 2"]
    assert table2["MACs/s BLOOM"] == ["0.53G", "0.80G", "1.07G", "1.33G", "1.60G", "1.87G"]
    assert table2["Params BLOOM"] == ["0.28M", "0.49M", "0.71M", "0.92M", "1.13M", "1.34M"]
    # Exact sums of the 0.28M .. 0.96M models. 003 prints 0.70M at l = 2 (it added the rounded 0.28 +
    # 0.42) and 3.64M at l = 6 (an arithmetic slip, FIDELITY.md): 284,931 + 420,741 = 705,672.
    assert table2["Params Baseline 1 (models 1..l)"] == ["0.28M", "0.71M", "1.26M", "1.95M", "2.78M", "3.75M"]


# ------------------------------------------------------------------------------------------------
# Bad input: --blocks outside 1..L through the command line


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("blocks", ["0", "5"])
def test_profile_with_blocks_outside_the_model_is_one_line(blocks, capsys):
    assert main(["profile", "tiny-bloom", "--blocks", blocks, "--no-rtf"]) == 2
    assert "this model has 4 blocks; --blocks must be between 1 and 4" in _one_line_error(capsys)


def test_enhance_with_blocks_outside_the_model_is_one_line(tmp_path, capsys):
    checkpoint = save_checkpoint(build_model("tiny-bloom"), tmp_path / "bloom")
    wav = tmp_path / "in.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32), 8000)
    assert main(["enhance", str(wav), "-o", str(tmp_path / "out"), "--model", str(checkpoint), "--blocks", "7"]) == 2
    assert "--blocks must be between 1 and 4" in _one_line_error(capsys)
    assert not (tmp_path / "out" / "in.wav").exists()


def test_evaluate_with_blocks_outside_the_model_is_one_line(corpus_root, tmp_path, capsys):
    checkpoint = save_checkpoint(build_model("tiny-bloom"), tmp_path / "bloom")
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": {"corpus": "librispeech", "root": str(corpus_root), "sample_rate": 8000,
                                             "snr_range": [-5, 10], "test_size": 2, "eval_segment_seconds": 1.0}}))
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--workers", "0", "--blocks", "0"]) == 2
    assert "--blocks must be between 1 and 4" in _one_line_error(capsys)


@pytest.mark.parametrize("override, message", [
    ("model={preset: tiny-resnet-tasnet}", "needs a bloom_net model"),
    ("model={preset: bloom-l6}", "data.sample_rate is 8000"),
    ("stages.finetune.train={lr: fast}", "stages.finetune.train.lr: expected a number"),
    ("stages.greedy={}", "unknown key 'stages.greedy'"),
])
def test_recipe_mistakes_are_one_line_errors_before_any_training(override, message, tmp_path, capsys):
    assert main(["train", str(RECIPES / "tiny.yaml"), f"out_dir={tmp_path / 'run'}", override]) == 2
    assert message in _one_line_error(capsys)
    assert not list((tmp_path / "run").glob("*/*/best"))

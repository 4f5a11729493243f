"""The sparse-ensemble recipes of papers 000 and 001, end to end on small LibriSpeech / MUSAN trees.

Every recipe file is loaded as written and only shrunk from the test (steps, sizes, list lengths),
so what runs here is what `leanse run recipes/...` runs. The tiny recipes run every stage and write
their report; the paper recipes build and take one optimiser step per stage at the papers'
settings.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.cli import main
from leanse.data.corpora import read_librispeech, read_musan_noise
from leanse.data.mixing import MixingOptions
from leanse.ensemble.gates import build_gate
from leanse.ensemble.report import gate_accuracy, size_sweep_figure, snr_label, tsne_points
from leanse.errors import CheckpointError, ConfigError, CorpusError
from leanse.models import build_model
from leanse.train.classify import PairDataset, load_gate
from leanse.train.ensembles import load_parts
from leanse.train.recipe import load_recipe
from leanse.train.stages import run_recipe, train_recipe

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("smole_snr", "smole_gender", "speaker_moe")
#: Shrinks any of the recipes to seconds: a few steps per stage, a few test mixtures.
SMALL = [
    "train.max_steps=4", "train.max_epochs=1", "train.max_minutes=null", "train.progress_bar=false",
    "train.devices=1", "train.accelerator=cpu", "train.log_every_n_steps=1", "data.examples_per_epoch=32", "data.batch_size=8",
    "data.valid_size=4", "data.test_size=12", "data.num_workers=0", "evaluate.workers=0",
    "stages.finetune.train.max_steps=3",
]
SECOND_SIZE = "{name: mask_rnn, hidden_size: 16, num_layers: 1, n_fft: 512, hop_length: 128}"
SPEAKER_SMALL = ["stages.siamese.pairs_per_epoch=32", "stages.siamese.valid_pairs=4"]


def _recipe(kind: str, scale: str, corpus_root: Path, out: Path, *extra: str):
    overrides = ["data.corpus=librispeech", f"data.root={corpus_root}", f"data.noise_root={corpus_root}",
                 f"out_dir={out}", *SMALL, *(SPEAKER_SMALL if kind == "speaker_moe" else []), *extra]
    return load_recipe(ROOT / "recipes" / kind / f"{scale}.yaml", overrides)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models train as fast on one thread, and a second one is ruinous when other processes
    share the two cores (OpenMP threads spin waiting for each other: measured 40x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_runs(corpus_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each tiny recipe run once, end to end; the tests below read its outputs."""
    out = tmp_path_factory.mktemp("tiny")
    extra = {"smole_gender": [f"stages.sizes=[{{preset: tiny-mask-rnn}}, {SECOND_SIZE}]"]}  # a size sweep
    return {kind: run_recipe(_recipe(kind, "tiny", corpus_root, out / kind, *extra.get(kind, []))) for kind in KINDS}


def _stage_folders(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.rglob("done"))


# -- the tiny recipes, end to end ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_tiny_recipe_trains_every_stage_and_reports_the_claims_with_numbers(tiny_runs, kind):
    result = tiny_runs[kind]
    run_dir = result.run_dir
    stages = {p.relative_to(run_dir).as_posix() for p in _stage_folders(run_dir)}
    size = {"smole_snr": "tiny-mask-rnn", "smole_gender": "tiny-mask-rnn", "speaker_moe": "gru-mask-64x2-8k"}[kind]
    k = {"smole_snr": 4, "smole_gender": 2, "speaker_moe": 2}[kind]
    where = f"k{k}/{size}" if kind == "speaker_moe" else size
    expected = {f"{size}/generalist", f"{where}/naive", f"{where}/finetune",
                *(f"{where}/specialist-{i}" for i in range(k))}
    expected |= {"siamese", "k2/gate"} if kind == "speaker_moe" else {"gate"}
    if kind == "smole_gender":  # the second size of the sweep: its own generalist, specialists, ensembles
        second = "mask_rnn-16x1"
        expected |= {f"{second}/{stage}" for stage in ("generalist", "specialist-0", "specialist-1", "naive", "finetune")}
    assert stages == expected
    report = result.report.read_text()
    for needle in ("Claims, measured on this run", "specialist beats the same-size generalist",
                   "fine-tuned ensemble is at least as good", "far above chance", "Gate accuracy per class",
                   "oracle", "naive ensemble", "fine-tuned ensemble", "parameters in total"):
        assert needle in report, needle
    assert report.count("HELD") >= 3  # each claim says whether it held, with its numbers
    for line in report.splitlines():
        if line.startswith("![") and "](" in line:
            assert (run_dir / line.split("](")[1].rstrip(")")).is_file(), line
    assert "SI-SDRi" in result.table and "fine-tuned ensemble" in result.table
    assert result.enhanced.is_file()


@pytest.mark.slow
def test_snr_report_breaks_si_sdri_down_by_input_snr_and_gate_accuracy_by_class(tiny_runs):
    report = tiny_runs["smole_snr"].report.read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model | files | all"))
    assert header.split("|")[4:8] == [" -5 dB ", " 0 dB ", " 5 dB ", " 10 dB "]
    for name in ("generalist", "specialist -5 dB", "specialist 10 dB", "oracle", "naive ensemble",
                 "fine-tuned ensemble"):
        assert f"| {name} |" in report
    assert "| -5 dB |" in report and "| all |" in report  # per-class rows of the gate table


@pytest.mark.slow
def test_gender_report_has_per_sex_columns_and_the_size_sweep(tiny_runs):
    report = tiny_runs["smole_gender"].report.read_text()
    assert "| model | files | all | -5 dB | 0 dB | 5 dB | 10 dB | M | F |" in report
    assert "| specialist M |" in report and "| specialist F |" in report
    assert "### Specialist size tiny-mask-rnn (headline)" in report and "### Specialist size mask_rnn-16x1" in report
    assert "![size sweep](size_sweep.png)" in report


@pytest.mark.slow
def test_speaker_moe_writes_groups_and_tsne_before_and_after_fine_tuning(tiny_runs, corpus_root):
    run_dir = tiny_runs["speaker_moe"].run_dir
    groups = json.loads((run_dir / "k2" / "groups.json").read_text())
    clusters = json.loads((run_dir / "k2" / "clusters.json").read_text())
    train = {u.speaker for u in read_librispeech(corpus_root, ["train-clean-100"])}
    assert {s for s, c in clusters.items() if c["how"] == "k-means"} == train
    assert {groups[s] for s in train} == {"0", "1"}  # K=2 non-empty groups of training speakers
    assert set(groups) >= train | {u.speaker for u in read_librispeech(corpus_root, ["test-clean"])}
    speakers = json.loads((run_dir / "speakers.json").read_text())
    assert all(len(v["mean"]) == 32 for v in speakers.values())  # f = GRU 32x2: 32-dim embeddings
    tsne = json.loads((run_dir / "tsne.json").read_text())
    assert tsne["speakers"] == sorted(train) and len(tsne["finetuned_classifier"]) == len(train)
    assert (run_dir / "tsne.png").stat().st_size > 10_000
    gate = load_gate(run_dir / "k2" / "gate" / "best")
    assert gate.num_classes == 2 and gate.sample_rate == 8000


@pytest.mark.slow
def test_finished_stages_are_not_trained_again(tiny_runs, corpus_root):
    run_dir = tiny_runs["smole_gender"].run_dir
    weights = sorted(run_dir.rglob("best/model.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in weights]
    recipe = _recipe("smole_gender", "tiny", corpus_root, run_dir)
    assert train_recipe(recipe) == run_dir / "tiny-mask-rnn" / "finetune" / "best"
    assert [p.stat().st_mtime_ns for p in weights] == stamps


@pytest.mark.slow
def test_oracle_rows_are_the_ensemble_in_oracle_mode(tiny_runs):
    """The report's oracle is each specialist on its own partition: SparseEnsemble(mode="oracle")."""
    run_dir = tiny_runs["smole_snr"].run_dir
    ensemble = load_checkpoint(run_dir / "tiny-mask-rnn" / "naive" / "best")
    ensemble.mode = "oracle"
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    rows = list(csv.DictReader((run_dir / "evaluation" / "tiny-mask-rnn" / "specialist-2" / "per_file.csv").open()))
    assert rows and all(float(r["snr"]) == 5.0 for r in rows)
    specialist = load_checkpoint(run_dir / "tiny-mask-rnn" / "specialist-2" / "best")
    wav = torch.randn(2, 16000) * 0.05
    with torch.no_grad():
        assert torch.equal(ensemble(wav, labels=torch.tensor([2, 2])), specialist(wav))
    assert recipe["stages"]["partition"][2] == 5


# -- the paper recipes: the papers' settings, one step per stage -----------------------------------


def test_paper_recipe_files_carry_the_papers_settings():
    snr = load_recipe(ROOT / "recipes/smole_snr/paper.yaml")
    gender = load_recipe(ROOT / "recipes/smole_gender/paper.yaml")
    for recipe in (snr, gender):  # 000 Sec. 3
        assert (recipe.data.sample_rate, recipe.data.segment_seconds, recipe.data.batch_size) == (16000, 1.0, 100)
        assert recipe.data.snrs == [-5, 0, 5, 10] and recipe.train.lr == 1e-3 and recipe.train.optimizer == "adam"
        assert recipe.stages["finetune"]["scale"] == 10.0
        assert len(recipe.stages["sizes"]) == 6 and recipe.data.train_subsets == ["train-clean-100"]
    assert snr.stages["gate"]["model"] == {"preset": "snr-gate-128x2"}
    assert gender.stages["gate"]["model"] == {"preset": "gender-gate-16x2"}
    speaker = load_recipe(ROOT / "recipes/speaker_moe/paper.yaml")  # 001 Sec. 3
    assert (speaker.data.sample_rate, speaker.data.segment_seconds, speaker.data.batch_size) == (8000, 5.0, 128)
    assert speaker.data.snr_range == [-5, 10] and speaker.train.lr == 1e-3
    assert speaker.stages["finetune"]["train"]["lr"] == 1e-4 and speaker.stages["ks"] == [2, 5, 10]
    assert speaker.stages["siamese"]["model"] == {"preset": "speaker-embed-32x2-8k"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_paper_recipe_builds_and_runs_one_step_per_stage(kind, tmp_path, corpus_root):
    size = {"smole_snr": "lstm-mask-512x2", "smole_gender": "lstm-mask-512x2", "speaker_moe": "gru-mask-64x2-8k"}[kind]
    extra = ["train.max_steps=1", "train.early_stop_patience=null",  # one step: no validation to stop on
             "stages.finetune.train.max_steps=1", "data.batch_size=2", "data.test_size=4",
             "data.valid_size=2", f"stages.sizes=[{{preset: {size}}}]"]
    if kind == "speaker_moe":
        extra += ["stages.ks=[2]", "stages.siamese.pairs_per_epoch=4", "stages.siamese.valid_pairs=2"]
    recipe = _recipe(kind, "paper", corpus_root, tmp_path / "run", *extra)
    assert recipe.model == {"preset": size}  # the paper's headline size itself
    result = run_recipe(recipe)
    assert result.report.is_file() and "fine-tuned ensemble" in result.table
    tuned = load_checkpoint(next(result.run_dir.rglob("finetune/best")))
    assert tuned.config["mode"] == "hard" and tuned.scale == 10.0
    steps = [json.loads((p / "leanse.json").read_text())["meta"] for p in result.run_dir.rglob("finetune/best")]
    assert steps and all(m.get("stage") == "finetune" for m in steps)


# -- bad input ------------------------------------------------------------------------------------


@pytest.fixture
def parts(tmp_path) -> Path:
    """An ensemble parts file (gate + 2 specialists) with every part on disk."""
    stft = dict(n_fft=256, hop_length=64, sample_rate=8000)
    gate = build_gate({"name": "rnn_gate", "hidden_size": 4, "num_layers": 1, "num_classes": 2, **stft})
    save_checkpoint(gate, tmp_path / "gate")
    for k in range(2):
        save_checkpoint(build_model({"name": "mask_rnn", "hidden_size": 4, "num_layers": 1, **stft}), tmp_path / f"s{k}")
    manifest = tmp_path / "parts.json"
    manifest.write_text(json.dumps({"gate": str(tmp_path / "gate"),
                                    "specialists": [str(tmp_path / "s0"), str(tmp_path / "s1")]}))
    return manifest


def test_parts_file_builds_the_naive_ensemble(parts):
    ensemble = load_parts(parts)
    assert ensemble.num_experts == 2 and ensemble.mode == "hard"


def test_ensemble_with_a_missing_specialist_file_says_which_and_what_to_do(parts):
    shutil.rmtree(parts.parent / "s1")
    with pytest.raises(CheckpointError, match=r"parts are missing: specialist 1 .*s1.*train them again"):
        load_parts(parts)


def test_ensemble_with_a_mismatched_specialist_is_refused(parts):
    save_checkpoint(build_model({"name": "mask_rnn", "hidden_size": 4, "num_layers": 1, "n_fft": 512,
                                 "hop_length": 128, "sample_rate": 8000}), parts.parent / "s1")
    with pytest.raises(CheckpointError, match="do not fit together.*n_fft=512.*n_fft=256"):
        load_parts(parts)


def test_ensemble_with_too_few_specialists_for_the_gates_k_is_refused(parts):
    manifest = json.loads(parts.read_text())
    manifest["specialists"] = manifest["specialists"][:1]
    parts.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="K=2"):
        load_parts(parts)


def test_ensemble_checkpoint_missing_a_specialists_weights_is_refused(parts, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_checkpoint(load_parts(parts), tmp_path / "ensemble")
    state = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.startswith("specialists.1.")}
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"ensemble: weights do not match the model config"):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["stages.gate.model.num_classes=3"], r"K=3 specialists but the partition has 4"),
        (["stages.partition=[0, 5]"], r"must list data.snrs"),
        (["data.snrs=null", "data.snr_range=[-5, 10]", "stages.partition=[]"], r"needs discrete SNRs"),
    ],
)
def test_k_that_does_not_match_the_partition_fails_before_training(tmp_path, corpus_root, overrides, message):
    recipe = _recipe("smole_snr", "tiny", corpus_root, tmp_path / "run", *overrides)
    with pytest.raises(ConfigError, match=message):
        train_recipe(recipe)
    assert not _stage_folders(tmp_path / "run")


def test_k_mismatch_is_one_line_from_the_command(tmp_path, corpus_root, capsys):
    args = ["data.corpus=librispeech", f"data.root={corpus_root}", f"out_dir={tmp_path / 'run'}",
            "stages.gate.model.num_classes=2"]
    assert main(["train", str(ROOT / "recipes/smole_snr/tiny.yaml"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("leanse: error: the gate chooses between K=2")


def test_gender_gate_on_a_corpus_without_gender_labels_is_a_clear_error(tmp_path, corpus_root):
    rows = ["path,speaker,split"]
    for split, subset in (("train", "train-clean-100"), ("valid", "dev-clean"), ("test", "test-clean")):
        rows += [f"{u.path},{u.speaker},{split}" for u in read_librispeech(corpus_root, [subset])]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    recipe = _recipe("smole_gender", "tiny", corpus_root, tmp_path / "run", "data.corpus=manifest",
                     f"data.manifest={manifest}")
    with pytest.raises(CorpusError, match=r"gender gate needs every speaker's sex.*'gender' column"):
        train_recipe(recipe)
    assert not _stage_folders(tmp_path / "run")


def test_fewer_speakers_than_k_fails_before_training(tmp_path, corpus_root):
    recipe = _recipe("speaker_moe", "tiny", corpus_root, tmp_path / "run", "stages.ks=[2, 5]")
    with pytest.raises(CorpusError, match=r"K=5 speaker groups from 4 training speakers"):
        train_recipe(recipe)
    assert not _stage_folders(tmp_path / "run")


def test_a_typo_in_the_stages_section_names_the_key(tmp_path, corpus_root):
    recipe = _recipe("smole_snr", "tiny", corpus_root, tmp_path / "run", "stages.finetune.lamda=10")
    with pytest.raises(ConfigError, match=r"stages.finetune.lamda"):
        train_recipe(recipe)


# -- pieces ---------------------------------------------------------------------------------------


def test_verification_pairs_are_noisy_balanced_and_new_each_epoch(corpus_root):
    speech = read_librispeech(corpus_root, ["train-clean-100"])
    noise = read_musan_noise(corpus_root, ["free-sound"])
    options = MixingOptions(sample_rate=8000, segment_seconds=1.0, snr_range=[-5, 10])
    pairs = PairDataset(speech, noise, options, size=8, seed=0)
    items = [pairs[i] for i in range(8)]
    assert sum(float(item["same"]) for item in items) == 4  # an equal chance of same / different
    assert items[0]["first"].shape == (8000,)
    again = PairDataset(speech, noise, options, size=8, seed=0)
    assert torch.equal(again[3]["first"], items[3]["first"])  # seeded
    again.set_epoch(1)
    assert not torch.equal(again[3]["first"], items[3]["first"])  # new pairs every epoch
    fixed = PairDataset(speech, noise, options, size=8, seed=0, fixed=True)
    fixed.set_epoch(5)
    assert torch.equal(fixed[3]["first"], items[3]["first"])  # validation pairs never change


def test_gate_accuracy_per_class_and_chance():
    accuracy = gate_accuracy([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2], ["a", "b", "c"])
    assert accuracy["overall"] == pytest.approx(4 / 6)
    assert accuracy["per_class"]["b"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    assert accuracy["chance"] == pytest.approx(1 / 3) and accuracy["majority"] == pytest.approx(0.5)
    assert accuracy["confusion"][1] == [1, 2, 0]


def test_snr_columns_are_the_discrete_snrs_or_five_db_bins():
    assert snr_label(5.0, [-5, 0, 5, 10]) == "5 dB"
    assert snr_label(7.3, None) == "[5, 10) dB" and snr_label(-4.9, None) == "[-5, 0) dB"


def test_size_sweep_figure_and_tsne_for_few_speakers(tmp_path):
    curves = {"generalist": [(1e5, 3.0, "64x2"), (4e5, 4.0, "128x2")],
              "fine-tuned ensemble": [(1.2e5, 3.8, "64x2"), (4.2e5, 4.5, "128x2")]}
    assert size_sweep_figure(curves, tmp_path / "sweep.png").stat().st_size > 10_000
    points, perplexity = tsne_points(np.random.default_rng(0).normal(size=(12, 32)), perplexity=40.0)
    assert points.shape == (12, 2) and perplexity < 12  # 001's 40 lowered for 12 speakers


def test_profile_against_a_generalist_prints_001s_reductions(capsys):
    assert main(["profile", "speaker-ensemble-k10-gru-64x2-8k", "--against", "gru-mask-512x2-8k",
                 "--json", "--no-rtf"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["reduction"]["params"] == pytest.approx(0.487, abs=5e-4)  # 001: "48 %"
    assert profile["reduction"]["effective_params"] == pytest.approx(0.933, abs=5e-4)  # 001: "94 %"


def test_hard_gating_benchmark_runs(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_hard_gating import main as bench

    bench(["--preset", "tiny-sparse-ensemble", "--seconds", "1", "--repeats", "3"])
    out = capsys.readouterr().out
    assert "hard / (gate + specialist) =" in out and "soft / hard =" in out


def test_a_validation_split_with_one_speaker_fails_before_the_siamese_trains(tmp_path, corpus_root):
    """001's Siamese validation pairs need two validation speakers: say so before the first step,
    not after an epoch of training."""
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_root, corpus)
    shutil.rmtree(corpus / "LibriSpeech" / "dev-clean" / "174")  # one validation speaker left
    recipe = _recipe("speaker_moe", "tiny", corpus, tmp_path / "run", f"data.root={corpus}",
                     f"data.noise_root={corpus}")
    with pytest.raises(CorpusError, match=r"Siamese validation pairs need at least two validation speakers"):
        train_recipe(recipe)
    assert not _stage_folders(tmp_path / "run")


def test_too_few_siamese_pairs_fail_before_training(tmp_path, corpus_root):
    recipe = _recipe("speaker_moe", "tiny", corpus_root, tmp_path / "run", "stages.siamese.valid_pairs=1")
    with pytest.raises(ConfigError, match=r"stages.siamese.valid_pairs"):
        train_recipe(recipe)
    assert not _stage_folders(tmp_path / "run")

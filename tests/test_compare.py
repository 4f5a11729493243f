"""``leanse compare``: every system on the same files, quality and cost side by side, plots with
the Pareto front, a report that resumes after an interruption, and one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from leanse.checkpoint import save_checkpoint
from leanse.cli import main
from leanse.compare import compare_models, load_system
from leanse.compare.plots import pareto_front
from leanse.errors import ConfigError
from leanse.models import build_model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    mask = save_checkpoint(build_model("tiny-mask-rnn"), folder / "mask" / "best")
    bloom = save_checkpoint(build_model({"preset": "tiny-bloom", "sample_rate": 16000}), folder / "bloom")
    return mask, bloom


@pytest.fixture(scope="module")
def compared(tmp_path_factory, checkpoints, voicebank_root):
    """One comparison (tiny models, an exit, RNNoise) shared by the tests that only read it."""
    mask, bloom = checkpoints
    out = tmp_path_factory.mktemp("compare") / "out"
    code = main(["compare", str(mask), f"{bloom}@l=2", str(bloom), "--data", str(voicebank_root),
                 "--peers", "rnnoise", "-o", str(out), "--workers", "0", "--no-dnsmos", "--samples", "2"])
    assert code == 0
    return out


def test_every_system_is_scored_and_costed_on_the_same_files(compared):
    rows = {r["system"]: r for r in csv.DictReader((compared / "results.csv").open())}
    assert list(rows) == ["noisy input", "mask", "bloom@l=2", "bloom", "RNNoise"]
    assert all(rows[s]["n"] == "6" for s in rows)
    # Cost from leanse.complexity: an exit runs fewer blocks (fewer MACs) with the same weights.
    assert float(rows["bloom@l=2"]["macs_per_second_exact"]) < float(rows["bloom"]["macs_per_second_exact"])
    assert rows["bloom@l=2"]["params"] == rows["bloom"]["params"]
    assert int(rows["mask"]["params"]) == sum(p.numel() for p in build_model("tiny-mask-rnn").parameters())
    assert rows["mask"]["latency_ms"] == "32.0"  # one 512-point STFT window at 16 kHz
    assert rows["RNNoise"]["params"] == "" and float(rows["RNNoise"]["rtf"]) > 0
    assert float(rows["RNNoise"]["latency_ms"]) == pytest.approx(20.0)  # its measured, removed delay
    # RNNoise really denoises white noise at 2.5-17.5 dB; the untrained mask RNN stays near identity.
    assert float(rows["RNNoise"]["si_sdri"]) > 1.0
    assert abs(float(rows["mask"]["si_sdri"])) < 3.0
    document = json.loads((compared / "results.json").read_text())
    assert {r["snr_bin"] for r in document["groups"]["snr_bin"]} == {"0..5", "5..10", "10..15", "15..20"}
    assert any("measured from the pair" in note for note in document["notes"])
    assert any("RNNoise" in note and "20.0 ms" in note for note in document["notes"])


def test_the_report_holds_tables_plots_and_a_self_contained_page(compared):
    report = (compared / "report.md").read_text()
    assert "| bloom@l=2 |" in report and "## By snr_bin" in report
    for name in ("quality_vs_macs.png", "quality_vs_rtf.png", "per_snr.png"):
        assert (compared / name).read_bytes()[:4] == b"\x89PNG"
        assert f"({name})" in report
    page = (compared / "report.html").read_text()
    # Self-contained: every image and sound is inside the file; nothing is fetched from anywhere.
    assert "http://" not in page and "https://" not in page
    assert page.count("data:audio/wav;base64,") == 2 * (1 + 4 + 1)  # 2 files: noisy, 4 systems, clean
    assert page.count("data:image/png;base64,") == 2 * 6 + 3


def test_pareto_front_keeps_only_undominated_points():
    # (cost, quality): b beats a (cheaper and better); d is dominated by c.
    points = [(10.0, 2.0), (5.0, 2.5), (20.0, 3.0), (30.0, 2.9), (1.0, 1.0)]
    assert pareto_front(points) == [4, 1, 2]


def test_an_interrupted_comparison_resumes_from_its_per_file_results(tmp_path, checkpoints, voicebank_root, monkeypatch):
    mask, _ = checkpoints
    out = tmp_path / "out"
    compare_models([str(mask)], voicebank_root, out, workers=0, dnsmos=False, rtf=False, samples=0)
    log = out / "per_file" / "mask.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 1 + 6  # a header, then one row per file
    # Simulate a kill: the last two rows are gone and a half-written line is left behind.
    log.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:20])
    scored = []
    import leanse.evaluate as evaluate

    original = evaluate.score_file
    monkeypatch.setattr(evaluate, "score_file", lambda *args: scored.append(1) or original(*args))
    again = compare_models([str(mask)], voicebank_root, out, workers=0, dnsmos=False, rtf=False, samples=0)
    assert len(scored) == 2  # only the two missing files were enhanced and scored again
    first = json.loads(lines[-1])
    assert [r for r in again.results[0].result.rows if r["id"] == first["id"]][0]["pesq"] == pytest.approx(first["pesq"])


def test_a_folder_of_other_data_is_never_mixed_into_a_comparison(tmp_path, checkpoints, voicebank_root):
    mask, _ = checkpoints
    out = tmp_path / "out"
    compare_models([str(mask)], voicebank_root, out, workers=0, dnsmos=False, rtf=False, samples=0, limit=2)
    with pytest.raises(ConfigError, match="other data"):
        compare_models([str(mask)], voicebank_root, out, workers=0, dnsmos=False, rtf=False, samples=0, limit=3)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a leanse comparison"):
        compare_models([str(mask)], voicebank_root, tmp_path / "mine", workers=0, dnsmos=False, rtf=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_model_specs_that_cannot_run_get_one_line_errors(tmp_path, checkpoints, capsys):
    mask, _ = checkpoints
    with pytest.raises(ConfigError, match="has no exits"):
        load_system(f"{mask}@l=2")
    with pytest.raises(ConfigError, match="blocks must be between 1 and 4"):
        load_system(f"{checkpoints[1]}@l=9")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    packed = tmp_path / "model.bin"
    packed.write_bytes(b"\x00" * 8)
    for spec, message in ((onnx, "export again with leanse export"), (packed, "not a model leanse can run")):
        assert main(["compare", str(spec), "--data", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_noisy_files_without_references_get_dnsmos_and_cost_only(tmp_path, checkpoints, voicebank_root):
    pytest.importorskip("speechmos", reason="DNSMOS is in the test extra")
    import shutil

    noisy = tmp_path / "recordings"
    noisy.mkdir()
    shutil.copy(voicebank_root / "noisy_testset_wav" / "p232_001.wav", noisy)
    comparison = compare_models(["noisereduce"], noisy, tmp_path / "out", workers=0, rtf=False, samples=1)
    row = comparison.overall_rows()[1]
    assert row["pesq"] is None and row["si_sdri"] is None
    assert 1.0 <= row["dnsmos_ovrl"] <= 5.0
    assert comparison.primary_metric == "dnsmos_ovrl"
    assert "No clean references" in (tmp_path / "out" / "report.md").read_text()
    assert np.isfinite(row["dnsmos_bak"])


def test_a_model_at_another_rate_runs_behind_resampling_and_says_so(tmp_path, voicebank_root):
    torch.manual_seed(0)
    bloom8k = save_checkpoint(build_model("tiny-bloom"), tmp_path / "bloom8k")  # 8 kHz, like recipes/bloom/tiny
    comparison = compare_models([f"{bloom8k}@l=1", "rnnoise"], voicebank_root, tmp_path / "out", workers=0,
                                dnsmos=False, rtf=False, samples=1, limit=2, sample_rate=16000)
    row = comparison.overall_rows()[1]
    assert row["system"] == "bloom8k@l=1" and row["n"] == 2 and np.isfinite(row["si_sdri"])
    assert comparison.results[0].result.sample_rate == 16000  # scored at the files' rate
    assert any("runs at 8000 Hz" in note and "0-4 kHz" in note for note in comparison.notes)
    # Its cost is its own, at 8 kHz: the same MACs/s as profiling the model directly.
    from leanse.complexity import profile_model

    direct = profile_model(build_model("tiny-bloom"), 1.0, convention="exact", rtf=False, blocks=1)
    assert row["macs_per_second_exact"] == pytest.approx(direct["macs_per_second"])


def test_noisereduce_peer_is_aligned_and_gates_the_noise_in_pauses():
    from leanse.peers import get_peer

    from conftest import voiced

    peer = get_peer("noisereduce")
    assert peer.delay_samples == 0  # whole-signal STFT processing: measured, no delay to remove
    clean = voiced(16000, 3.0, 150.0, np.random.default_rng(0))
    noise = 0.03 * np.random.default_rng(3).standard_normal(len(clean)).astype(np.float32)
    out = peer.enhance(clean + noise, 16000)
    lags = list(range(-8, 9))
    assert lags[int(np.argmax([np.dot(out[100 + lag:-100 + lag], clean[100:-100]) for lag in lags]))] == 0
    t = np.arange(len(clean)) / 16000
    pauses = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)) < 0.05  # where voiced()'s envelope is ~silent
    assert np.mean(out[pauses] ** 2) < 0.1 * np.mean(noise[pauses] ** 2)


def test_a_recipe_test_list_with_fixed_snrs_is_broken_down_by_each_snr(tmp_path, checkpoints, corpus_root):
    import yaml

    mask, _ = checkpoints
    recipe = tmp_path / "data.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"corpus": "librispeech", "root": str(corpus_root),
                                               "snrs": [0, 10], "test_size": 6}}))
    comparison = compare_models([str(mask)], recipe, tmp_path / "out", workers=0, dnsmos=False, rtf=False, samples=0)
    assert comparison.data.description["kind"] == "recipe test list" and len(comparison.data) == 6
    assert {row["snr_bin"] for row in comparison.group_rows("snr_bin")} <= {"0", "10"}
    assert sum(r["n"] for r in comparison.group_rows("snr_bin") if r["system"] == "mask") == 6


def test_an_exported_onnx_graph_is_compared_beside_its_checkpoint(tmp_path, checkpoints, voicebank_root):
    pytest.importorskip("onnxruntime", reason="in the test extra")
    from leanse.checkpoint import load_checkpoint
    from leanse.export import export_onnx

    mask, _ = checkpoints
    onnx = tmp_path / "mask.onnx"
    export_onnx(load_checkpoint(mask), onnx)
    comparison = compare_models([str(mask), str(onnx)], voicebank_root, tmp_path / "out", workers=0,
                                dnsmos=False, samples=0, limit=2)
    torch_row, onnx_row = comparison.overall_rows()[1:]
    assert onnx_row["system"] == "mask.onnx" and onnx_row["kind"] == "onnx"
    # The same network in onnxruntime scores what it scores in PyTorch (parity checked at export).
    assert onnx_row["si_sdri"] == pytest.approx(torch_row["si_sdri"], abs=1e-3)
    assert onnx_row["bytes"] == onnx.stat().st_size and onnx_row["rtf"] > 0
    assert onnx_row["latency_ms"] == torch_row["latency_ms"] == 32.0
    assert onnx_row["params"] is None  # not counted from a graph: said in the notes
    assert any("mask.onnx" in note and "onnxruntime" in note for note in comparison.notes)

"""Paired corpora (VoiceBank-DEMAND, DNS-style clean/ + noisy/): read as recorded, usable for
training, ``evaluate`` and ``compare``, so a leanse model sits in the same table as the papers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from leanse.checkpoint import save_checkpoint
from leanse.cli import main
from leanse.data.datamodule import DataConfig, MixtureDataset, build_mixers
from leanse.data.paired import iter_paired, read_paired, recognise_layout
from leanse.errors import CorpusError
from leanse.models import build_model

from conftest import voiced


def test_voicebank_demand_is_recognised_by_its_folder_names(voicebank_root):
    assert recognise_layout(voicebank_root) == "voicebank-demand"
    test = read_paired(voicebank_root, "test")
    train = read_paired(voicebank_root, "train")
    assert [p.id for p in test] == ["p232_001", "p232_002", "p232_003", "p257_001", "p257_002", "p257_003"]
    assert {p.speaker for p in test} == {"p232", "p257"} and {p.speaker for p in train} == {"p226", "p287"}
    assert all(p.clean.replace("clean_testset_wav", "noisy_testset_wav") == p.noisy for p in test)
    # The noisy folder given on its own finds its clean sibling.
    assert [p.id for p in read_paired(voicebank_root / "noisy_testset_wav")] == [p.id for p in test]
    with pytest.raises(CorpusError, match="valid"):
        read_paired(voicebank_root, "valid")  # VB-DMD has none: held out of train instead


def test_the_56_speaker_training_set_is_recognised_too(tmp_path, voicebank_root):
    import shutil

    root = tmp_path / "vb56"
    shutil.copytree(voicebank_root / "clean_testset_wav", root / "clean_testset_wav")
    shutil.copytree(voicebank_root / "noisy_testset_wav", root / "noisy_testset_wav")
    shutil.copytree(voicebank_root / "clean_trainset_28spk_wav", root / "clean_trainset_56spk_wav")
    shutil.copytree(voicebank_root / "noisy_trainset_28spk_wav", root / "noisy_trainset_56spk_wav")
    assert len(read_paired(root, "train")) == 6


def test_dns_style_pairs_match_by_fileid_and_read_the_snr_from_the_name(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "clean").mkdir()
    (tmp_path / "noisy").mkdir()
    for fileid, snr in ((3, 5), (12, -5)):
        clean = voiced(16000, 1.0, 150.0, rng)
        sf.write(tmp_path / "clean" / f"clean_fileid_{fileid}.wav", clean, 16000)
        sf.write(tmp_path / "noisy" / f"book_00{fileid}_snr{snr}_tl-25_fileid_{fileid}.wav", clean + 0.01, 16000)
    pairs = read_paired(tmp_path)
    assert recognise_layout(tmp_path) == "pairs"
    assert [(p.clean.split("/")[-1], p.labels["snr"]) for p in pairs] == [
        ("clean_fileid_12.wav", -5.0), ("clean_fileid_3.wav", 5.0)]
    mixtures = list(iter_paired(tmp_path))
    np.testing.assert_allclose(mixtures[0].noisy - mixtures[0].clean, 0.01, atol=2 / 32768)  # 16-bit files
    # A noisy file without its reference is a one-line error, never a silent skip.
    sf.write(tmp_path / "noisy" / "orphan.wav", clean, 16000)
    with pytest.raises(CorpusError, match="orphan.wav: no clean reference"):
        read_paired(tmp_path)


def test_paired_mixer_serves_aligned_segments_for_training(voicebank_root):
    data = DataConfig(corpus="paired", root=str(voicebank_root), segment_seconds=0.5, test_size=100,
                      valid_size=4, valid_holdout=0.2)
    mixers = build_mixers(data)
    # The standard table scores the whole test set, whole files, under the corpus's own names.
    assert [s.id for s in mixers.test_specs] == [p.id for p in read_paired(voicebank_root, "test")]
    assert all(s.clean_offset == 0.0 for s in mixers.test_specs)
    item = MixtureDataset(mixers.train, size=4, seed=0)[1]
    assert item["noisy"].shape == item["clean"].shape == (8000,)
    # The segment is the same stretch of both files: noisy - clean is the corpus's noise there.
    spec = mixers.train.draw(np.random.default_rng(5), "x")
    mixture = mixers.train.render(spec)
    noisy_file, _ = sf.read(spec.noise, dtype="float32")
    start = int(round(spec.noise_offset * 16000))
    np.testing.assert_allclose(mixture.noisy, noisy_file[start:start + 8000], atol=1e-6)
    assert spec.clean.replace("clean_", "noisy_") == spec.noise


def test_a_paired_recipe_trains_and_evaluates(tmp_path, voicebank_root, capsys):
    recipe = {
        "name": "paired_tiny", "kind": "single", "model": {"preset": "tiny-mask-rnn"},
        "data": {"corpus": "paired", "root": str(voicebank_root), "segment_seconds": 0.5,
                 "examples_per_epoch": 8, "valid_size": 2, "test_size": 100, "batch_size": 4, "valid_holdout": 0.2},
        "train": {"max_epochs": 1, "accelerator": "cpu", "progress_bar": False, "threads": 1},
        "out_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "paired.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    best = capsys.readouterr().out.split("best checkpoint:")[-1].strip()
    assert main(["evaluate", best, "--data", str(path), "--out", str(tmp_path / "scores"), "--workers", "0"]) == 0
    summary = json.loads((tmp_path / "scores" / "summary.json").read_text())
    assert summary["n_files"] == 6 and summary["overall"]["pesq"] is not None
    # The corpus folder itself is enough for evaluate: its whole test set, whole files.
    assert main(["evaluate", best, "--data", str(voicebank_root), "--out", str(tmp_path / "dir"), "--workers", "0"]) == 0
    again = json.loads((tmp_path / "dir" / "summary.json").read_text())
    assert again["n_files"] == 6 and again["overall"]["si_sdr"] == summary["overall"]["si_sdr"]


def test_a_test_only_folder_refuses_to_train(tmp_path, voicebank_root):
    data = DataConfig(corpus="paired", root=str(voicebank_root / "noisy_testset_wav"))
    mixers = build_mixers(data)
    assert len(mixers.test_specs) == 6
    with pytest.raises(CorpusError, match="no training set"):
        mixers.train.draw(np.random.default_rng(0), "x")


def test_paired_corpora_refuse_options_that_only_mixing_has(voicebank_root):
    from leanse.errors import ConfigError

    with pytest.raises(ConfigError, match="augment"):
        build_mixers(DataConfig(corpus="paired", root=str(voicebank_root), augment={"gain": 0.5}))

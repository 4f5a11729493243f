"""A user's round trip through the command: train a checkpoint, score it, enhance their files."""

from __future__ import annotations

import csv
import json

import numpy as np
import soundfile as sf
import yaml

from leanse.checkpoint import save_checkpoint
from leanse.cli import main
from leanse.models import build_model

from conftest import voiced


def test_evaluate_scores_a_checkpoint_on_the_fixed_test_list(tmp_path, corpus_root, capsys):
    checkpoint = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "ckpt")
    recipe = tmp_path / "data.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"corpus": "librispeech", "root": str(corpus_root),
                                               "snrs": [0, 10], "test_size": 6}}))
    out = tmp_path / "scores"
    assert main(["evaluate", str(checkpoint), "--data", str(recipe), "--out", str(out), "--workers", "1"]) == 0
    rows = list(csv.DictReader((out / "per_file.csv").open()))
    assert len(rows) == 6 and {float(r["snr"]) for r in rows} <= {0.0, 10.0}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_files"] == 6
    assert "snr=0" in capsys.readouterr().out
    # The same list, scored again from its CSV, gives the same numbers: every model sees the same mixtures.
    from leanse.data.datamodule import DataConfig, build_mixers
    from leanse.data.mixing import write_specs

    specs = build_mixers(DataConfig(corpus="librispeech", root=str(corpus_root), snrs=[0, 10], test_size=6)).test_specs
    write_specs(tmp_path / "list.csv", specs)
    assert main(["evaluate", str(checkpoint), "--data", str(recipe), "--list", str(tmp_path / "list.csv"),
                 "--out", str(tmp_path / "again"), "--workers", "1"]) == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["overall"]["si_sdr"] == summary["overall"]["si_sdr"]


def test_enhance_resamples_and_downmixes_and_says_so(tmp_path, capsys):
    checkpoint = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "ckpt")
    rng = np.random.default_rng(0)
    left = voiced(44100, 2.0, 150.0, rng) + 0.01 * rng.standard_normal(88200).astype(np.float32)
    stereo = np.stack([left, 0.8 * left], axis=1)
    noisy = tmp_path / "in" / "noisy take.wav"
    noisy.parent.mkdir()
    sf.write(noisy, stereo, 44100)
    before = noisy.read_bytes()
    assert main(["enhance", str(noisy), "-o", str(tmp_path / "out"), "--model", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "downmixed" in printed and "44100" in printed
    info = sf.info(tmp_path / "out" / "noisy take.wav")
    assert (info.samplerate, info.channels, info.frames) == (44100, 1, 88200)
    assert noisy.read_bytes() == before

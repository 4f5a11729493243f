"""The README's main job, shrunk: demo corpus -> train -> score -> enhance -> report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from leanse.cli import main

RECIPE = Path(__file__).parent.parent / "recipes" / "mask_rnn" / "tiny.yaml"


@pytest.mark.slow
def test_the_main_job_trains_scores_enhances_and_reports(tmp_path, capsys):
    overrides = [
        f"data.root={tmp_path / 'demo'}", "data.demo.speakers=8", "data.demo.utterances_per_speaker=6",
        f"out_dir={tmp_path / 'run'}", "data.examples_per_epoch=256", "data.valid_size=8",
        "data.test_size=12", "train.max_epochs=4", "train.progress_bar=false",
    ]
    assert main(["run", str(RECIPE), *overrides]) == 0
    out = capsys.readouterr().out
    for column in ("params", "MACs/s", "RTF", "SI-SDRi", "PESQ", "STOI", "ESTOI"):
        assert column in out
    run = tmp_path / "run"
    report = (run / "report.md").read_text()
    assert "12 mixtures" in report and "synthetic" in report
    assert (run / "spectrograms.png").stat().st_size > 10_000
    assert (run / "training_curve.png").is_file()
    enhanced = next((run / "examples").glob("*_enhanced.wav"))
    assert sf.info(enhanced).samplerate == 16000
    summary = json.loads((run / "evaluation" / "summary.json").read_text())
    # A few epochs on the demo corpus already beat the noisy input.
    assert summary["overall"]["si_sdri"] > 1.0, summary["overall"]

"""leanse.evaluate: model inference here, scoring in worker processes, tables and files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from leanse import metrics
from leanse.data.records import Mixture
from leanse.errors import AudioError, LeanseError
from leanse.evaluate import EvaluationResult, evaluate_model
from leanse.models import EnhancementModel, build_model

RATE = 16000


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Two shared cores: multi-threaded torch next to the scoring workers runs far slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def speech_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal: PESQ's VAD and STOI treat it as speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 60 * rng.random() + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.1 * voiced * syllables).astype(np.float32)


def make_mixtures(snrs=(0.0, 5.0), per_snr: int = 2, seconds: float = 2.0, rate: int = RATE):
    out = []
    for i, snr in enumerate(s for s in snrs for _ in range(per_snr)):
        clean = speech_like(seconds, rate, seed=i)
        noise = np.random.default_rng(100 + i).standard_normal(clean.shape).astype(np.float32)
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr / 10))
        meta = {"snr": snr, "speaker": f"spk{i % 2}", "sources": [clean, noise]}  # list: not a label
        out.append(Mixture(f"mix{i}", clean + noise, clean, rate, meta))
    return out


class Identity(EnhancementModel):
    """Returns its input, times ``gain``: SI-SDRi is exactly 0 and PESQ equals the noisy PESQ."""

    def __init__(self, sample_rate: int = RATE) -> None:
        super().__init__(sample_rate)

    def forward(self, wav: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return wav * gain


class Oracle(EnhancementModel):
    """Knows the clean signals (by length-matched lookup): the perfect enhancer."""

    def __init__(self, cleans: list[np.ndarray]) -> None:
        super().__init__(RATE)
        self.cleans = cleans

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        outs = []
        for row in wav.numpy():
            distances = [np.sum((row - c) ** 2) for c in self.cleans]
            outs.append(self.cleans[int(np.argmin(distances))])
        return torch.from_numpy(np.stack(outs))


class TwoSources(EnhancementModel):
    num_sources = 2

    def __init__(self) -> None:
        super().__init__(RATE)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.stack([wav, -wav], dim=1)  # [B, S, T]


@pytest.fixture(scope="module")
def mixtures():
    return make_mixtures()


def test_identity_model_in_worker_processes(mixtures, tmp_path):
    result = evaluate_model(Identity(), mixtures, out_dir=tmp_path, workers=2)
    assert isinstance(result, EvaluationResult)
    assert result.count == 4 and [r["id"] for r in result.rows] == ["mix0", "mix1", "mix2", "mix3"]
    row = result.rows[0]
    assert row["snr"] == 0.0 and row["speaker"] == "spk0" and "sources" not in row
    for r in result.rows:
        assert r["si_sdri"] == pytest.approx(0.0, abs=1e-9)
        assert r["pesq"] == r["pesq_noisy"] and r["stoi"] == pytest.approx(r["stoi_noisy"])
    # the workers computed exactly what the metrics give in this process
    m = mixtures[3]
    row = dict(result.rows[3])
    assert (row.pop("id"), row.pop("snr"), row.pop("speaker")) == ("mix3", 5.0, "spk1")
    expected = metrics.score_pair(m.noisy, m.clean, m.noisy, RATE)
    assert row == pytest.approx(expected, rel=1e-9)  # (E)STOI's FFTs: last-bit noise
    groups = result.groups()["snr"]
    assert list(groups) == ["0", "5"] and groups["0"]["n"] == 2
    assert groups["0"]["si_sdr_noisy"] == pytest.approx(0.0, abs=0.3)  # white noise: SI-SDR ~ SNR
    assert groups["5"]["si_sdr_noisy"] == pytest.approx(5.0, abs=0.3)
    assert result.means["pesq"] == pytest.approx(np.mean([r["pesq"] for r in result.rows]))

    # files: CSV with one row per mixture, JSON summary with counts and conventions
    with open(tmp_path / "per_file.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["id"] for r in table] == ["mix0", "mix1", "mix2", "mix3"]
    assert float(table[2]["pesq"]) == pytest.approx(result.rows[2]["pesq"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_files"] == 4 and summary["overall"]["pesq_failures"] == 0
    assert "zero-mean" in summary["conventions"]["si_sdr"] and summary["conventions"]["pesq_mode"] == "wb"
    assert summary["groups"]["snr"]["5"]["n"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_oracle_scores_high_and_table_says_what_it_averages(mixtures):
    oracle = Oracle([m.clean for m in mixtures])
    result = evaluate_model(oracle, mixtures, workers=0, batch_size=3, group_by=("snr", "speaker"))
    means = result.means
    assert means["si_sdr"] > 60 and means["si_sdri"] > 55
    assert means["pesq"] == pytest.approx(4.64, abs=0.01) and means["pesq"] > means["pesq_noisy"]
    assert means["stoi"] == pytest.approx(1.0, abs=1e-6)
    table = result.table()
    assert "| all | 4 |" in table and "| snr=0 | 2 |" in table and "| speaker=spk1 | 2 |" in table
    assert "Means over 4 files" in table and "zero-mean SI-SDR" in table
    assert "PESQ wideband (P.862.2) at 16000 Hz" in table and "0 PESQ failures" in table


def test_batching_changes_nothing(mixtures):
    tiny = build_model("tiny-mask-rnn")
    uneven = mixtures[:3] + make_mixtures(snrs=(10.0,), per_snr=1, seconds=1.5)  # lengths differ
    one = evaluate_model(tiny, uneven, workers=0, batch_size=1)
    four = evaluate_model(tiny, uneven, workers=0, batch_size=4)
    for a, b in zip(one.rows, four.rows):
        assert a["si_sdr"] == pytest.approx(b["si_sdr"], abs=1e-3)


def test_forward_kwargs_reach_the_model(mixtures):
    result = evaluate_model(Identity(), mixtures[:1], workers=0, gain=0.25)
    assert result.rows[0]["si_sdri"] == pytest.approx(0.0, abs=1e-6)  # scale-invariant
    assert result.info["forward_kwargs"] == {"gain": 0.25}


def test_pesq_failures_are_counted_not_zero():
    # a silent clean reference: PESQ has no utterance to score, for the output or the input
    quiet = Mixture("quiet", np.zeros(RATE, np.float32) + 0.0, np.zeros(RATE, np.float32), RATE,
                    {"snr": 0.0})
    quiet.noisy[::100] = 0.01
    good = make_mixtures(snrs=(0.0,), per_snr=1)
    result = evaluate_model(Identity(), [quiet, *good], workers=0)
    assert result.rows[0]["pesq"] is None and result.pesq_failures == 1
    assert result.means["pesq"] == pytest.approx(result.rows[1]["pesq"])  # mean of the one score
    assert "1 PESQ failure left out" in result.table()


def test_rate_mismatch_is_a_clear_error():
    mixture = make_mixtures(snrs=(0.0,), per_snr=1, rate=8000)[0]
    with pytest.raises(AudioError, match="is at 8000 Hz but the model runs at 16000 Hz"):
        evaluate_model(Identity(), [mixture], workers=0)


def test_separation_needs_source(mixtures):
    with pytest.raises(LeanseError, match="separation model with 2 outputs; choose one with --source"):
        evaluate_model(TwoSources(), mixtures, workers=0)
    result = evaluate_model(TwoSources(), mixtures[:1], workers=0, source=1)
    assert result.rows[0]["si_sdri"] == pytest.approx(0.0, abs=1e-6)  # SI-SDR ignores the sign of -noisy

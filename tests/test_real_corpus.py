"""`leanse data real` on a tiny fixture in the Debian packages' own layout (never the network)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter

from leanse.data import real
from leanse.data.devset import paired_mixtures, read_dev_list
from leanse.errors import CorpusError


def voice(f0: float, seconds: float, rate: int, seed: int) -> np.ndarray:
    """A vowel-like pulse train at ``f0`` through three formants, gated like syllables."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    pulses = np.zeros(n)
    pulses[:: int(rate / f0)] = 1.0
    out = pulses
    for centre, width in ((700, 130), (1200, 90), (2600, 160)):
        r = np.exp(-np.pi * width / rate)
        theta = 2 * np.pi * centre / rate
        out = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], out)
    out = out + 0.02 * rng.standard_normal(n) * np.abs(out).max()  # breath: wideband content
    gate = (np.sin(2 * np.pi * 2.5 * np.arange(n) / rate + seed) > -0.5).astype(float)
    return (0.3 * out * gate / np.abs(out).max()).astype(np.float32)


def write(path: Path, wav: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, rate, format="OGG" if path.suffix == ".ogg" else "WAV")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packages")
    rng = np.random.default_rng(0)
    cs = root / "fillets-ng-data-cs" / "usr/share/games/fillets-ng/sound"
    for i in range(4):  # the small fish (female voice) and the big fish (male voice)
        write(cs / "bar" / "cs" / f"bar-m-{i}.ogg", voice(230, 1.5, 22050, i), 22050)
        write(cs / "bar" / "cs" / f"bar-v-{i}.ogg", voice(110, 1.5, 22050, 10 + i), 22050)
    write(cs / "bar" / "cs" / "bar-x-0.ogg", voice(160, 1.5, 22050, 20), 22050)
    duplicate = (cs / "bar" / "cs" / "bar-m-0.ogg").read_bytes()
    (cs / "bar" / "cs" / "bar-m-9.ogg").write_bytes(duplicate)  # same bytes: kept once
    clipped = np.clip(voice(230, 1.5, 22050, 30) * 8, -1, 1)
    write(cs / "bar" / "cs" / "bar-m-5.wav", clipped, 22050)  # .wav: not matched by the .ogg pattern
    write(cs / "bar" / "cs" / "bar-m-6.ogg", np.clip(voice(230, 1.5, 22050, 31) * 8, -0.999, 0.999), 22050)
    kt = root / "ktuberling-data" / "usr/share/ktuberling/sounds"
    for language, f0 in (("en", 120), ("de", 210), ("fr", 140)):
        for i in range(3):
            write(kt / language / f"word{i}.ogg", voice(f0, 1.0, 44100, 100 + i), 44100)
    for i in range(3):  # an 8-kHz set behind a 44.1-kHz header: band-limited, dropped
        write(kt / "es" / f"word{i}.wav", real.resample(voice(200, 1.0, 8000, 200 + i), 8000, 44100), 44100)
    mg = root / "megaglest-data" / "usr/share/games/megaglest"
    write(mg / "tilesets/forest/sounds/wind.ogg", (0.1 * rng.standard_normal(44100 * 3)).astype(np.float32), 44100)
    write(mg / "techs/megapack/factions/tech/music/theme.ogg", voice(330, 4.0, 44100, 7), 44100)
    tux = root / "tuxpaint-stamps-default" / "usr/share/tuxpaint/stamps"
    write(tux / "animals/bee.ogg", (0.1 * rng.standard_normal(44100 * 2)).astype(np.float32), 44100)
    write(tux / "animals/bee_desc_fr.ogg", voice(180, 1.2, 44100, 300), 44100)  # a training voice
    fl = root / "fillets-ng-data" / "usr/share/games/fillets-ng/music"
    write(fl / "menu.ogg", voice(260, 3.0, 22050, 8), 22050)
    for name in ("fillets-ng-data-cs", "ktuberling-data"):
        doc = root / name / "usr/share/doc" / name
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(f"{name}: GPL\n")
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def corpus(trees, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("real") / "corpus"
    summary = real.build_real_corpus(out, trees=trees, babble_files=2, procedural_files=4, dev_mixtures=6)
    return out, summary


def test_voices_are_named_by_package_structure_and_sexed_by_f0(corpus):
    out, summary = corpus
    with (out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    by_speaker = {row["speaker"]: row for row in rows}
    assert by_speaker["fillets-cs-m"]["gender"] == "F" and by_speaker["fillets-cs-v"]["gender"] == "M"
    assert by_speaker["fillets-cs-bar-x"]["split"] == "train"
    assert by_speaker["tuxpaint-fr"]["split"] == "train"
    assert {by_speaker[s]["split"] for s in ("ktuberling-en", "ktuberling-de", "ktuberling-fr")} == {"dev"}
    assert by_speaker["ktuberling-de"]["gender"] == "F" and by_speaker["ktuberling-en"]["gender"] == "M"
    for row in rows:
        wav, rate = sf.read(out / row["path"])
        assert rate == 16000 and wav.ndim == 1


def test_short_clips_are_joined_into_utterances_of_at_least_four_seconds(corpus):
    out, _ = corpus
    with (out / "manifest.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["speaker"] == "fillets-cs-v"]
    # four 1.5-s clips with pauses: one utterance of >= 4 s, the rest joined into a last one
    lengths = [sf.info(str(out / r["path"])).duration for r in rows]
    assert lengths[0] >= real.UTTERANCE_SECONDS
    assert sum(lengths) > 4 * 1.5


def test_band_limited_clipped_and_duplicate_audio_is_dropped_by_measurement(corpus):
    _, summary = corpus
    assert any("ktuberling-es" in voices for reason, voices in summary["dropped_voices"].items()
               if reason.startswith("band-limited"))
    assert "ktuberling-es" not in summary["speakers"]["dev"]
    assert summary["dropped"]["duplicate file"] == 1
    assert summary["dropped"]["clipped"] >= 1
    assert summary["voices"]["fillets-cs-m"]["clips"] == 4  # 4 clean originals; copy and clipped gone


def test_clipped_tells_flat_tops_from_loud_peaks():
    loud = voice(200, 1.0, 16000, 1) / 0.3 * 0.999
    assert not real.clipped(loud)
    assert real.clipped(np.clip(loud * 4, -1, 1))


def test_noise_is_written_in_musan_layout_per_split(corpus):
    out, summary = corpus
    noise = out / "noise"
    # training babble from the fixture's 4 training voices; dev babble needs >= 1 file (2 // 4 = 0)
    assert sorted(p.name for p in noise.iterdir()) == [
        "dev-effects", "dev-music", "dev-procedural", "train-ambient", "train-babble", "train-music",
        "train-procedural",
    ]
    assert list((noise / "dev-effects").glob("*.wav"))  # tuxpaint's bee, not its spoken description
    assert not list((noise / "dev-effects").glob("*desc*"))
    assert summary["noise_minutes"]["train-ambient"] > 0


def test_dev_set_is_paired_files_with_labels(corpus):
    out, summary = corpus
    rows = read_dev_list(out / "dev")
    assert len(rows) == 6 == summary["dev_set"]["mixtures"]
    assert all(-5 <= row["snr"] <= 10 for row in rows)
    assert {r["speaker"] for r in rows} <= set(summary["speakers"]["dev"])
    mixtures = list(paired_mixtures(out / "dev"))
    assert [m.id for m in mixtures] == [r["id"] for r in rows]
    for mixture in mixtures:
        assert len(mixture.noisy) == len(mixture.clean) == 4 * 16000
        assert mixture.meta["noise_type"] in ("effects", "music", "procedural", "babble")


def test_licences_name_every_package(corpus):
    out, _ = corpus
    text = (out / "LICENSES.md").read_text()
    for package in ("fillets-ng-data-cs", "ktuberling-data", "megaglest-data", "tuxpaint-stamps-default"):
        assert f"| {package} | {real.PACKAGES[package].version} |" in text
    assert (out / "licenses" / "ktuberling-data.copyright").is_file()


def test_building_again_reuses_the_finished_corpus_and_never_writes_into_a_foreign_folder(corpus, trees, tmp_path):
    out, summary = corpus
    stamp = (out / "manifest.csv").stat().st_mtime_ns
    assert real.build_real_corpus(out, trees=trees) == json.loads((out / "summary.json").read_text())
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="not empty"):
        real.build_real_corpus(foreign, trees=trees)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_without_apt_get_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(real.shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="needs apt-get") as caught:
        real.fetch_packages(tmp_path, ["gcin-voice"])
    assert "\n" not in str(caught.value)


def test_a_deb_whose_sha256_differs_from_the_pinned_one_is_refused(tmp_path):
    (tmp_path / "gcin-voice_0~20170223-3_all.deb").write_bytes(b"not the package")
    with pytest.raises(CorpusError, match="sha256"):
        real.fetch_packages(tmp_path, ["gcin-voice"])


def test_cli_without_apt_get_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    from leanse.cli import main

    monkeypatch.setattr(real.shutil, "which", lambda name: None)
    assert main(["data", "real", "--out", str(tmp_path / "real")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leanse: error:") and "apt-get" in err and "\n" not in err

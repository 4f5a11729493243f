"""The embedded demo corpus (leanse.data.demo): layout, splits, determinism, audio, folder safety
and whether the pseudo-speakers can actually be told apart. Tiny sizes: 8 speakers x 3 utterances.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from leanse.data import demo
from leanse.data.corpora import read_librispeech, read_musan_noise
from leanse.data.noise import noise_types
from leanse.data.demo import SUBSETS, plan_demo_corpus, split_sizes, write_demo_corpus
from leanse.errors import ConfigError, CorpusError, LeanseError

SMALL = dict(speakers=8, utterances_per_speaker=3, noises_per_split=7)  # 7 = every noise type once


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    return out, write_demo_corpus(out, seed=0, workers=2, **SMALL)


@pytest.fixture(scope="module")
def corpus_one_worker(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo1")
    write_demo_corpus(out, seed=0, workers=1, **SMALL)
    return out


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory) -> tuple[Path, dict]:
    """Seed 1, built after a simulated crash half-way, so the resume path is exercised too."""
    out = tmp_path_factory.mktemp("demo2") / "corpus"

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo.corpus, "_write_noise", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            write_demo_corpus(out, seed=1, **SMALL)
    after_crash = {
        "manifest": (out / demo.constants.MANIFEST).exists(),
        "marker": (out / demo.constants.BUILDING).exists(),
        "flacs": len(list(out.rglob("*.flac"))),
    }
    summary = write_demo_corpus(out, seed=1, **SMALL)
    return out, {"after_crash": after_crash, "summary": summary}


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def speakers_txt(root: Path) -> dict[str, tuple[str, str, float]]:
    """Parse SPEAKERS.TXT strictly: 'ID | SEX | SUBSET | MINUTES | NAME'."""
    rows = {}
    for line in (root / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";"):
            continue
        sid, sex, subset, minutes, name = (field.strip() for field in line.split("|"))
        assert sid.isdigit() and sex in ("M", "F") and subset in SUBSETS and name
        rows[sid] = (sex, subset, float(minutes))
    return rows


def test_layout_is_librispeech_and_musan(corpus):
    out, summary = corpus
    assert summary["status"] == "built" and summary["utterances"] == 24
    top = sorted(p.name for p in out.iterdir())
    assert top == ["LibriSpeech", "README.txt", "demo_corpus.json", "musan"]
    libri = sorted(p.name for p in (out / "LibriSpeech").iterdir())
    assert libri == sorted(["SPEAKERS.TXT", *SUBSETS])
    n_flac = 0
    for subset in SUBSETS:
        for speaker in (out / "LibriSpeech" / subset).iterdir():
            for chapter in speaker.iterdir():
                assert speaker.name.isdigit() and chapter.name.isdigit()
                names = sorted(p.name for p in chapter.iterdir())
                trans = f"{speaker.name}-{chapter.name}.trans.txt"
                assert trans in names
                flacs = [n for n in names if n != trans]
                pattern = re.compile(rf"{speaker.name}-{chapter.name}-\d{{4}}\.flac")
                assert flacs and all(pattern.fullmatch(n) for n in flacs), names
                lines = (chapter / trans).read_text().splitlines()
                assert [line.split(" ", 1)[0] for line in lines] == [n[:-5] for n in flacs]
                assert all(re.fullmatch(r"\S+ [A-Z' ]+", line) for line in lines)
                n_flac += len(flacs)
    assert n_flac == 24
    noise = out / "musan" / "noise"
    assert [p.name for p in (out / "musan").iterdir()] == ["noise"]
    assert sorted(p.name for p in noise.iterdir()) == ["free-sound", "sound-bible"]
    for split in ("free-sound", "sound-bible"):
        names = sorted(p.name for p in (noise / split).iterdir())
        assert names == [f"noise-{split}-{i:04d}.wav" for i in range(7)]
    readme = (out / "README.txt").read_text()
    assert "espeak-ng" in readme and "GPL-3" in readme and "espeakng-loader" in readme
    # the project's own readers accept it
    assert len(read_librispeech(out, SUBSETS)) == 24
    assert len(read_musan_noise(out, ("free-sound", "sound-bible"))) == 14


def test_speakers_balanced_and_disjoint(corpus):
    out, _ = corpus
    rows = speakers_txt(out)
    assert len(rows) == 8
    for subset, size in split_sizes(8).items():
        sexes = [sex for sex, sub, _ in rows.values() if sub == subset]
        assert len(sexes) == size and sexes.count("M") == sexes.count("F")
        folders = {p.name for p in (out / "LibriSpeech" / subset).iterdir()}
        assert folders == {sid for sid, (_, sub, _) in rows.items() if sub == subset}
    assert all(minutes > 0 for *_, minutes in rows.values())
    assert split_sizes(40) == {"train-clean-100": 28, "dev-clean": 4, "test-clean": 8}
    for bad in (7, 4, 0, "8"):
        with pytest.raises(ValueError, match="even number of speakers"):
            split_sizes(bad)


def test_babble_only_from_held_out_speakers(corpus):
    out, _ = corpus
    manifest = json.loads((out / demo.constants.MANIFEST).read_text())
    babble = {split: set(map(str, ids)) for split, ids in manifest["babble_speakers"].items()}
    listed = set(speakers_txt(out))
    on_disk = {p.name for subset in SUBSETS for p in (out / "LibriSpeech" / subset).iterdir()}
    assert babble["free-sound"] and babble["sound-bible"]
    assert not babble["free-sound"] & babble["sound-bible"]  # test noise has its own talkers
    for talkers in babble.values():
        assert not talkers & listed and not talkers & on_disk
    # every noise type appears in each split, and some files are non-stationary
    for split in ("free-sound", "sound-bible"):
        kinds = [k for rel, k in manifest["noise_types"].items() if f"/{split}/" in rel]
        assert {k.split("+")[0] for k in kinds} == set(noise_types())
        assert any("+" in k for k in kinds)
    # the default size too (planning only, no synthesis)
    plan = plan_demo_corpus(40, 20, 0)
    test_ids = {s.id for s in plan if s.subset == "test-clean"}
    assert not test_ids & {s.id for s in plan if s.subset is None}


def test_same_seed_identical_with_any_worker_count(corpus, corpus_one_worker):
    two, one = file_hashes(corpus[0]), file_hashes(corpus_one_worker)
    # flac, trans (one chapter per speaker at this size), noise, SPEAKERS.TXT + README + manifest
    assert len(two) == 24 + 8 + 14 + 3
    assert two == one


def test_different_seed_gives_different_audio(corpus, other_seed):
    hashes0, hashes1 = file_hashes(corpus[0]), file_hashes(other_seed[0])
    audio = lambda hashes: {h for rel, h in hashes.items() if rel.endswith((".flac", ".wav"))}
    assert not audio(hashes0) & audio(hashes1)


def test_interrupted_build_never_looks_complete_and_resumes(other_seed):
    out, info = other_seed
    assert info["after_crash"] == {"manifest": False, "marker": True, "flacs": 24}
    assert info["summary"]["status"] == "built"
    assert (out / demo.constants.MANIFEST).is_file() and not (out / demo.constants.BUILDING).exists()


def test_audio_is_16k_mono_finite_and_not_silent(corpus):
    out, _ = corpus
    for path in sorted((out / "LibriSpeech").rglob("*.flac")):
        info = sf.info(str(path))
        header = (info.samplerate, info.channels, info.format, info.subtype)
        assert header == (16000, 1, "FLAC", "PCM_16")
        wav, _ = sf.read(str(path))
        assert np.all(np.isfinite(wav)) and np.max(np.abs(wav)) > 0.1
        assert 1.99 <= wav.size / 16000 <= 6.01, path
    noise_hashes = set()
    for path in sorted((out / "musan").rglob("*.wav")):
        info = sf.info(str(path))
        header = (info.samplerate, info.channels, info.format, info.subtype)
        assert header == (16000, 1, "WAV", "PCM_16")
        wav, _ = sf.read(str(path))
        assert np.all(np.isfinite(wav)) and np.sqrt(np.mean(wav**2)) > 0.01
        assert 3.0 <= wav.size / 16000 <= 10.0
        noise_hashes.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(noise_hashes) == 14  # distinct instances


def test_refuses_foreign_folders_and_bad_parameters(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(CorpusError, match="not empty"):
        write_demo_corpus(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert (foreign / "notes.txt").read_text() == "precious"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(CorpusError, match="is a file"):
        write_demo_corpus(a_file, **SMALL)
    for kwargs in ({"speakers": 7}, {"speakers": 4}, {"utterances_per_speaker": 0}, {"workers": 0}):
        with pytest.raises(ConfigError) as err:
            write_demo_corpus(tmp_path / "new", **{**SMALL, **kwargs})
        assert isinstance(err.value, LeanseError)
    with pytest.raises(ValueError):
        write_demo_corpus(tmp_path / "new", speakers=9)
    assert not (tmp_path / "new").exists()


def test_synthesis_failure_is_a_clear_error():
    library, _ = demo.corpus._espeak_paths()
    job = {"library": library, "data_root": "/nonexistent", "voice": "en", "rate": 160,
           "utterances": [[1, 3.0]]}  # fmt: skip
    with pytest.raises(CorpusError, match="espeak-ng synthesis failed"):
        demo.corpus._run_worker(job)


def test_second_call_is_a_no_op(corpus):
    out, _ = corpus
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = write_demo_corpus(out, seed=0, workers=2, **SMALL)
    assert again["status"] == "already built" and again["utterances"] == 24
    assert again["seconds"] < 2.0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    with pytest.raises(CorpusError, match="already holds a demo corpus"):
        write_demo_corpus(out, seed=5, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


# ---- the pseudo-speakers must be distinguishable, or gender gates and speaker groups are moot --
def _f0(wav: np.ndarray, rate: int = 16000) -> float:
    """Median autocorrelation pitch (Hz) over clearly voiced 40 ms frames."""
    frame, lo, hi = 640, rate // 400, rate // 50
    values = []
    for start in range(0, wav.size - frame, frame // 2):
        x = wav[start : start + frame] * np.hanning(frame)
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * frame)) ** 2)[:frame]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            values.append(rate / lag)
    return float(np.median(values))


def _mfcc_stats(wav: np.ndarray, rate: int = 16000, n_fft: int = 512, n_mels: int = 40):
    """Mean and std of 20 MFCCs over the louder frames (a classic text-independent speaker
    vector)."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    edges = 700 * (10 ** (np.linspace(mel(50), mel(7600), n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    bank = np.stack([
        np.clip(np.minimum((bins - l) / (c - l), (r - bins) / (r - c)), 0, None)
        for l, c, r in zip(edges, edges[1:], edges[2:])
    ])  # fmt: skip
    starts = range(0, wav.size - n_fft, 160)
    frames = np.stack([wav[s : s + n_fft] * np.hanning(n_fft) for s in starts])
    energy = np.sqrt(np.mean(frames**2, axis=1))
    frames = frames[energy > 0.1 * energy.max()]
    log_mel = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ bank.T + 1e-8)
    k = np.arange(n_mels)
    dct = np.cos(np.pi / n_mels * (k[None, :] + 0.5) * np.arange(20)[:, None])
    mfcc = log_mel @ dct.T
    return np.concatenate([mfcc.mean(axis=0), mfcc.std(axis=0)])


def _speaker_files(out: Path) -> dict[str, tuple[str, list[Path]]]:
    rows = speakers_txt(out)
    return {
        sid: (sex, sorted((out / "LibriSpeech" / subset / sid).rglob("*.flac")))
        for sid, (sex, subset, _) in rows.items()
    }


def test_male_and_female_pitch_clearly_differ(corpus):
    pitch = {"M": [], "F": []}
    for sex, files in _speaker_files(corpus[0]).values():
        pitch[sex].append(np.median([_f0(sf.read(str(f))[0]) for f in files]))
    assert max(pitch["M"]) * 1.2 < min(pitch["F"]), pitch


def test_speakers_identifiable_by_mfcc_nearest_centroid(corpus):
    """Enrol each speaker on one utterance, identify the other two: chance is 1/8."""
    speakers = _speaker_files(corpus[0])
    enrol = {sid: _mfcc_stats(sf.read(str(files[0]))[0]) for sid, (_, files) in speakers.items()}
    ids = list(enrol)
    centroids = np.stack([enrol[sid] for sid in ids])
    mean, std = centroids.mean(axis=0), centroids.std(axis=0) + 1e-6
    correct = trials = 0
    for sid, (_, files) in speakers.items():
        for path in files[1:]:
            vector = (_mfcc_stats(sf.read(str(path))[0]) - mean) / std
            guess = ids[int(np.argmin(np.sum(((centroids - mean) / std - vector) ** 2, axis=1)))]
            correct += guess == sid
            trials += 1
    assert trials == 16 and correct >= 12, f"{correct}/{trials} utterances identified"


def test_the_synthesis_worker_imports_only_the_standard_library():
    """Each speaker is synthesised by the worker file run by path in a fresh interpreter: it must
    not pull numpy / torch / soxr in (every import would be paid once per speaker)."""
    import subprocess
    import sys

    worker = Path(demo.worker.__file__).resolve()
    code = (
        f"import runpy, sys; runpy.run_path({str(worker)!r}, run_name='__main__'); "
        "heavy = sorted({'numpy', 'torch', 'soxr', 'soundfile', 'scipy'} & set(sys.modules)); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

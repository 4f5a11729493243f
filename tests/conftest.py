"""Shared fixtures: small corpora written in the exact layouts of LibriSpeech and MUSAN.

The real corpora cannot be downloaded here, so the readers are tested on trees with the same
layout and file formats, filled with harmonic "voiced" tones (pitch per speaker) and noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SPEAKERS = [  # id, sex, subset
    ("19", "F", "train-clean-100"), ("26", "M", "train-clean-100"),
    ("27", "M", "train-clean-100"), ("32", "F", "train-clean-100"),
    ("84", "F", "dev-clean"), ("174", "M", "dev-clean"),
    ("61", "M", "test-clean"), ("121", "F", "test-clean"),
]


def voiced(rate: int, seconds: float, pitch: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic tone with a syllable-like envelope: speech-shaped enough for masks and PESQ."""
    t = np.arange(int(rate * seconds)) / rate
    wav = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6)) / k for k in range(1, 12) if pitch * k < rate / 2)
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)) * (rng.uniform(0.5, 1.0))
    return (0.1 * wav * envelope).astype(np.float32)


def write_librispeech(root: Path, rate: int = 16000, utterances: int = 3, seconds: float = 2.0) -> Path:
    base = root / "LibriSpeech"
    base.mkdir(parents=True)
    lines = ["; ID  |SEX| SUBSET           |MINUTES| NAME"]
    rng = np.random.default_rng(0)
    for speaker, sex, subset in SPEAKERS:
        lines.append(f"{speaker:<5}| {sex} | {subset:<17}| 25.00 | Reader {speaker}")
        chapter = base / subset / speaker / "1000"
        chapter.mkdir(parents=True)
        pitch = 120.0 if sex == "M" else 220.0
        transcript = []
        for u in range(utterances):
            name = f"{speaker}-1000-{u:04d}"
            sf.write(chapter / f"{name}.flac", voiced(rate, seconds, pitch + 7 * u, rng), rate, subtype="PCM_16")
            transcript.append(f"{name} SOME WORDS")
        (chapter / f"{speaker}-1000.trans.txt").write_text("\n".join(transcript) + "\n")
    (base / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return base


def write_musan(root: Path, rate: int = 16000, per_category: int = 4, seconds: float = 3.0) -> Path:
    base = root / "musan" / "noise"
    rng = np.random.default_rng(1)
    for category in ("free-sound", "sound-bible"):
        (base / category).mkdir(parents=True)
        for i in range(per_category):
            noise = rng.standard_normal(int(rate * seconds)).astype(np.float32) * 0.05
            sf.write(base / category / f"noise-{category}-{i:04d}.wav", noise, rate)
    return root / "musan"


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LibriSpeech + MUSAN tree (16 kHz) shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("corpus")
    write_librispeech(root)
    write_musan(root)
    return root


#: VoiceBank-DEMAND's folders (Valentini-Botinhao et al. 2016) with two speakers each, its SNRs.
VOICEBANK_SETS = [
    ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav", ["p226", "p287"], [0.0, 5.0, 10.0, 15.0]),
    ("clean_testset_wav", "noisy_testset_wav", ["p232", "p257"], [2.5, 7.5, 12.5, 17.5]),
]


def write_voicebank_demand(root: Path, rate: int = 16000, utterances: int = 3, seconds: float = 1.5) -> Path:
    """VoiceBank-DEMAND's exact layout: ``clean_*_wav/pSPK_UTT.wav`` + ``noisy_*_wav/`` of the same
    names, each noisy file the clean one plus noise at one of the corpus's SNRs."""
    rng = np.random.default_rng(2)
    for clean_dir, noisy_dir, speakers, snrs in VOICEBANK_SETS:
        (root / clean_dir).mkdir(parents=True)
        (root / noisy_dir).mkdir(parents=True)
        for s, speaker in enumerate(speakers):
            for u in range(utterances):
                clean = voiced(rate, seconds + 0.25 * u, 120.0 + 90 * s + 9 * u, rng)
                noise = rng.standard_normal(len(clean)).astype(np.float32)
                snr = snrs[(s + u) % len(snrs)]
                noise *= np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (snr / 10))
                name = f"{speaker}_{u + 1:03d}.wav"
                sf.write(root / clean_dir / name, clean, rate, subtype="FLOAT")
                sf.write(root / noisy_dir / name, clean + noise, rate, subtype="FLOAT")
    return root


@pytest.fixture(scope="session")
def voicebank_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small VoiceBank-DEMAND tree (16 kHz) shared by the tests that only read it."""
    return write_voicebank_demand(tmp_path_factory.mktemp("voicebank"))

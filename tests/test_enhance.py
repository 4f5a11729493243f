"""leanse.enhance: chunked, streaming, bounded-memory enhancement of files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from leanse.enhance import EnhanceReport, enhance_files, enhance_waveform
from leanse.audio import resample
from leanse.errors import AudioError, ConfigError, LeanseError
from leanse.metrics import si_sdr
from leanse.models import EnhancementModel, build_model


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Two cores shared with other jobs: torch's intra-op threads then spin and run 10-100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def speech_like(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal (all harmonics below 4 kHz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 40 * rng.random() + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    noise = 0.01 * rng.standard_normal(t.shape)
    return (0.1 * voiced * syllables + noise).astype(np.float32)


class Identity(EnhancementModel):
    """A perfect 'enhancer' of an already clean signal: any chunking must give it back exactly."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__(sample_rate)

    def forward(self, wav: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return wav * gain  # [B, T]


class RandomGain(EnhancementModel):
    """Multiplies each call's chunk by a different gain: every chunk border is a discontinuity."""

    def __init__(self) -> None:
        super().__init__(16000)
        self.rng = np.random.default_rng(0)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return wav * float(self.rng.uniform(0.5, 1.5))


class TwoSources(EnhancementModel):
    num_sources = 2

    def __init__(self) -> None:
        super().__init__(16000)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.stack([wav, -wav], dim=1)  # [B, S, T]


@pytest.fixture(scope="module")
def tiny() -> EnhancementModel:
    torch.manual_seed(0)
    return build_model("tiny-mask-rnn").eval()


# ------------------------------------------------------------------ chunking and cross-fading


@pytest.mark.parametrize(
    "seconds, chunk, overlap",
    [
        (5.0, 1.0, 0.25),  # several chunks, remainder longer than the overlap
        (4.0, 1.0, 0.25),  # 4 s = 5 hops + overlap: remainder exactly the overlap
        (0.7, 1.0, 0.25),  # shorter than one chunk
        (0.01, 1.0, 0.25),  # shorter than the model minimum: zero-padded
        (3.0, 1.0, 0.0),  # no overlap
    ],
)
def test_identity_model_is_reproduced_exactly(seconds, chunk, overlap):
    # The fades sum to one, and the last chunk is aligned to the end: nothing is lost or doubled.
    x = speech_like(seconds, 16000)
    y = enhance_waveform(Identity(), x, 16000, chunk_seconds=chunk, overlap_seconds=overlap)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_forward_kwargs_reach_the_model():
    x = speech_like(1.0, 16000)
    y = enhance_waveform(Identity(), x, 16000, chunk_seconds=0.3, overlap_seconds=0.05, gain=0.5)
    np.testing.assert_allclose(y, 0.5 * x, atol=1e-6)


def test_cross_fade_removes_chunk_border_jumps():
    x = np.full(16000 * 3, 0.1, np.float32)  # a constant: any step in the output is a border
    faded = enhance_waveform(RandomGain(), x, 16000, chunk_seconds=0.5, overlap_seconds=0.1)
    hard = enhance_waveform(RandomGain(), x, 16000, chunk_seconds=0.5, overlap_seconds=0.0)
    # Without overlap the output steps by 0.1 * (g_k - g_k+1), up to 0.1; the sin^2 fade over
    # 1600 samples spreads it: slope <= 0.1 * pi / (2 * 1600) ~ 1e-4 per sample.
    assert np.abs(np.diff(hard)).max() > 5e-3
    assert np.abs(np.diff(faded)).max() < 1.1e-4


def test_chunked_matches_whole_for_the_tiny_mask_rnn(tiny):
    # The mask RNN restarts its LSTM state at each chunk; its state is forgotten well within the
    # 0.5 s fade, so chunked and whole outputs differ only by float rounding-level amounts.
    # Measured: ~64 dB; 30 dB (a 3% error amplitude) is the bar for "inaudible".
    x = speech_like(12.0, 16000)
    with torch.no_grad():
        whole = tiny(torch.from_numpy(x)[None])[0].numpy()
    chunked = enhance_waveform(tiny, x, 16000, chunk_seconds=2.0, overlap_seconds=0.5)
    assert si_sdr(chunked, whole) > 30


def test_separation_model_needs_a_source():
    x = speech_like(1.0, 16000)
    with pytest.raises(LeanseError, match="separation model with 2 outputs; choose one with --source"):
        enhance_waveform(TwoSources(), x, 16000)
    np.testing.assert_allclose(enhance_waveform(TwoSources(), x, 16000, source=1), -x, atol=1e-6)
    with pytest.raises(LeanseError, match="out of range"):
        enhance_waveform(TwoSources(), x, 16000, source=2)


def test_bad_chunk_settings():
    with pytest.raises(ConfigError, match="overlap_seconds < chunk_seconds"):
        enhance_waveform(Identity(), speech_like(1.0, 16000), 16000, chunk_seconds=1, overlap_seconds=1)


# ------------------------------------------------------------------ files


def test_stereo_44k_file_is_downmixed_and_resampled(tmp_path):
    left, right = speech_like(3.0, 44100, seed=1), speech_like(3.0, 44100, seed=2)
    sf.write(tmp_path / "talk.wav", np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    (report,) = enhance_files([tmp_path / "talk.wav"], tmp_path / "out", Identity(),
                              chunk_seconds=1.0, overlap_seconds=0.2)
    assert isinstance(report, EnhanceReport)
    assert report.output == tmp_path / "out" / "talk.wav"
    assert report.notes == ["downmixed 2 channels to mono", "resampled 44100 -> 16000 -> 44100 Hz"]
    out, rate = sf.read(report.output, dtype="float32")
    assert rate == 44100 and out.ndim == 1 and len(out) == len(left) == report.frames
    # identity at 16 kHz: what comes back is the mono mix resampled down and up, and streaming
    # resampling equals resampling the whole signal at once
    mono = sf.read(tmp_path / "talk.wav", dtype="float32")[0].mean(axis=1)
    expected = resample(resample(mono, 44100, 16000), 16000, 44100)
    np.testing.assert_allclose(out, expected[: len(out)], atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["talk.wav"]  # no temp left


def test_flac_stays_flac_and_model_runs(tmp_path, tiny):
    sf.write(tmp_path / "a.flac", speech_like(2.0, 16000), 16000)
    (report,) = enhance_files([tmp_path / "a.flac"], tmp_path / "out", tiny, chunk_seconds=1.0)
    assert report.output.name == "a.flac" and report.notes == []
    info = sf.info(report.output)
    assert info.format == "FLAC" and info.frames == 32000 and info.samplerate == 16000


def test_never_overwrites_its_input(tmp_path):
    sf.write(tmp_path / "a.wav", speech_like(1.0, 16000), 16000)
    before = (tmp_path / "a.wav").read_bytes()
    with pytest.raises(AudioError, match="refusing to overwrite the input"):
        enhance_files([tmp_path / "a.wav"], tmp_path, Identity())
    assert (tmp_path / "a.wav").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_a_folder_is_enhanced_file_by_file_keeping_relative_paths(tmp_path):
    """``leanse enhance DIR -o OUT``: every audio file below DIR, at the same relative path."""
    corpus = tmp_path / "corpus"
    (corpus / "speaker" / "chapter").mkdir(parents=True)
    sf.write(corpus / "top.wav", speech_like(1.0, 16000), 16000)
    sf.write(corpus / "speaker" / "chapter" / "deep.flac", speech_like(1.0, 16000, seed=1), 16000)
    (corpus / "speaker" / "notes.txt").write_text("not audio, not an audio extension: skipped\n")
    out = corpus / "enhanced"  # inside the input folder: its own outputs are never inputs
    for _ in range(2):
        reports = enhance_files([corpus], out, Identity())
        assert len(reports) == 2
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["speaker/chapter/deep.flac", "top.wav"]
    np.testing.assert_allclose(sf.read(out / "top.wav")[0], sf.read(corpus / "top.wav")[0], atol=1e-6)


def test_same_stem_fails_before_writing(tmp_path):
    (tmp_path / "x").mkdir()
    sf.write(tmp_path / "a.wav", speech_like(1.0, 16000), 16000)
    sf.write(tmp_path / "x" / "a.flac", speech_like(1.0, 16000), 16000)
    with pytest.raises(AudioError, match="same name 'a'"):
        enhance_files([tmp_path / "a.wav", tmp_path / "x" / "a.flac"], tmp_path / "out", Identity())
    assert not (tmp_path / "out").exists()


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "text.wav").write_text("this is not audio\n")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(tmp_path / "zeros.wav", np.zeros(16000, np.float32), 16000)
    nan = speech_like(12.0, 16000)  # NaN after a few blocks: the temp file is already written to
    nan[10 * 16000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "folder.wav").mkdir()
    return {
        "missing": tmp_path / "missing.wav",
        "folder": tmp_path / "folder.wav",
        "text": tmp_path / "text.wav",
        "empty": tmp_path / "empty.wav",
        "zeros": tmp_path / "zeros.wav",
        "nan": tmp_path / "nan.wav",
    }


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("folder", "a folder with no audio files"),
        ("text", "cannot read as audio"),
        ("empty", "empty"),
        ("zeros", "silent"),
        ("nan", r"NaN or Inf samples \(first at 10.00 s\)"),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path, kind, message):
    path = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "out"
    with pytest.raises(AudioError, match=message) as caught:
        enhance_files([path], out, Identity(), chunk_seconds=1.0)
    assert "\n" not in str(caught.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_header_problems_of_any_input_stop_everything_before_writing(tmp_path):
    sf.write(tmp_path / "good.wav", speech_like(1.0, 16000), 16000)
    with pytest.raises(AudioError, match="no such file"):
        enhance_files([tmp_path / "good.wav", tmp_path / "gone.wav"], tmp_path / "out", Identity())
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ bounded memory

MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from leanse.enhance import enhance_files
    from leanse.models import build_model

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    torch.manual_seed(0)
    model = build_model("tiny-mask-rnn")
    short, long, out = (Path(p) for p in sys.argv[1:4])
    enhance_files([short], out, model)  # warm-up: every buffer and allocator pool in use
    before = peak_mb()
    (report,) = enhance_files([long], out, model)
    print(json.dumps({"before_mb": before, "after_mb": peak_mb(), "seconds": report.seconds}))
    """
)


def _write_noise_file(path: Path, seconds: float, rate: int = 16000) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(int(seconds)):  # one second at a time: the test itself stays small too
            f.write((0.1 * rng.standard_normal(rate)).astype(np.float32))


def test_ten_minute_file_in_bounded_memory(tmp_path):
    # 10 min at 16 kHz is 9.6 M samples: 38 MB as float32 for the input alone, and the tiny
    # model's STFT of it would be ~150 MB more. Streaming must keep the peak where a 30 s file
    # left it.
    _write_noise_file(tmp_path / "short.wav", 30)
    _write_noise_file(tmp_path / "long.wav", 600)
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "short.wav"),
         str(tmp_path / "long.wav"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    print(probe)
    assert probe["after_mb"] - probe["before_mb"] < 40, probe
    assert sf.info(tmp_path / "out" / "long.wav").frames == 600 * 16000

"""Bad input gets one clear line on stderr, a non-zero exit status, and nothing is lost."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.cli import main
from leanse.config import from_dict
from leanse.errors import CheckpointError, ConfigError
from leanse.models import build_model
from leanse.train.recipe import Recipe, load_recipe


def _error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert err.startswith("leanse: error: ")
    return err


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "ckpt")


def _recipe_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_recipe_typo_names_the_key(tmp_path, capsys):
    path = _recipe_file(tmp_path, {"train": {"lerning_rate": 0.1}})
    err = _error_line(capsys, ["train", str(path)])
    assert "'train.lerning_rate'" in err and "lr" in err


def test_a_wrong_type_names_the_key(tmp_path, capsys):
    path = _recipe_file(tmp_path, {"data": {"batch_size": "large"}})
    assert "data.batch_size: expected an integer" in _error_line(capsys, ["train", str(path)])


def test_overrides_are_checked_like_the_file(tmp_path):
    path = _recipe_file(tmp_path, {"name": "x"})
    assert load_recipe(path, ["train.lr=0.0001"]).train.lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="train.max_epoch"):
        load_recipe(path, ["train.max_epoch=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe(path, ["train.lr"])


def test_unknown_model_option_and_preset(tmp_path):
    with pytest.raises(ConfigError, match="no option 'hidden'"):
        build_model({"name": "mask_rnn", "hidden": 3})
    with pytest.raises(ConfigError, match="unknown model preset 'lstm-mask-7x7'"):
        build_model("lstm-mask-7x7")
    with pytest.raises(ConfigError, match="rnn_type"):
        from_dict(Recipe, {"model": {"name": "mask_rnn", "rnn_type": "transformer"}}) and build_model(
            {"name": "mask_rnn", "rnn_type": "transformer"}
        )


def test_checkpoint_round_trip(checkpoint):
    model = load_checkpoint(checkpoint)
    assert model.config == build_model("tiny-mask-rnn").config


def test_truncated_weights_are_a_clear_error(checkpoint, capsys):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "corrupt or truncated" in _error_line(capsys, ["profile", str(checkpoint), "--no-rtf"])


def test_a_foreign_checkpoint_is_refused(tmp_path, checkpoint, capsys):
    (checkpoint / "leanse.json").write_text('{"some": "other tool"}')
    assert "not a leanse checkpoint" in _error_line(capsys, ["profile", str(checkpoint), "--no-rtf"])
    pickle_file = tmp_path / "model.ckpt"
    pickle_file.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="not a leanse checkpoint"):
        load_checkpoint(pickle_file)


def test_weights_that_do_not_fit_the_config(tmp_path, checkpoint):
    other = save_checkpoint(build_model({"preset": "tiny-mask-rnn", "hidden_size": 32}), tmp_path / "other")
    shutil.copy(other / "model.safetensors", checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError, match="do not match the model config"):
        load_checkpoint(checkpoint)


def test_a_corpus_with_the_wrong_layout_says_what_was_expected(tmp_path, checkpoint, capsys):
    (tmp_path / "corpus").mkdir()
    err = _error_line(capsys, ["evaluate", str(checkpoint), "--data", str(tmp_path / "corpus")])
    assert "SPEAKERS.TXT" in err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "a folder with no audio files"),
        (lambda p: p.write_text("not audio"), "cannot read as audio"),
        (lambda p: sf.write(p, np.zeros(0, dtype=np.float32), 16000), "empty"),
        (lambda p: sf.write(p, np.zeros(16000, dtype=np.float32), 16000), "silent"),
        (lambda p: sf.write(p, np.array([0.1, np.nan] * 800, dtype=np.float32), 16000, subtype="FLOAT"), "NaN"),
    ],
    ids=["missing", "directory", "not-audio", "empty", "silent", "nan"],
)
def test_bad_audio_for_enhance(tmp_path, checkpoint, capsys, make, message):
    bad = tmp_path / "bad.wav"
    make(bad)
    out = tmp_path / "out"
    assert message in _error_line(capsys, ["enhance", str(bad), "-o", str(out), "--model", str(checkpoint)])
    assert not out.exists() or not any(out.iterdir()), "nothing may be left behind"


def test_enhance_never_overwrites_its_input(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(0)
    audio = tmp_path / "speech.wav"
    sf.write(audio, rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
    before = audio.read_bytes()
    assert "overwrite" in _error_line(capsys, ["enhance", str(audio), "-o", str(tmp_path), "--model", str(checkpoint)])
    assert audio.read_bytes() == before


def test_the_command_exits_non_zero_from_a_shell(tmp_path):
    result = subprocess.run([sys.executable, "-m", "leanse.cli", "profile", str(tmp_path / "nothing")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown model preset" in result.stderr

"""``leanse serve``'s app (no browser; tests/test_browser.py drives the page in Chromium): the
models with their exits and costs, an upload enhanced and served back, and what it refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from leanse.checkpoint import save_checkpoint
from leanse.models import build_model
from leanse.serve import Enhancer, build_app

from conftest import voiced

pytest.importorskip("starlette", reason="leanse[serve] is in the test extra")
from starlette.testclient import TestClient  # noqa: E402


@pytest.fixture()
def served(tmp_path):
    torch.manual_seed(0)
    mask = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "mask")
    bloom = save_checkpoint(build_model({"preset": "tiny-bloom", "sample_rate": 16000}), tmp_path / "bloom")
    enhancer = Enhancer([str(mask), str(bloom)], max_bytes=200_000, rtf=False)
    with TestClient(build_app(enhancer)) as client:
        yield client, enhancer
    assert not enhancer.folder.exists()  # the private folder goes when the server stops


def wav_upload(rate: int = 16000, seconds: float = 1.0, channels: int = 1) -> bytes:
    wav = voiced(rate, seconds, 150.0, np.random.default_rng(0))
    wav = wav + 0.01 * np.random.default_rng(1).standard_normal(len(wav)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wav] * channels, axis=1), rate, format="WAV")
    return buffer.getvalue()


def test_models_are_offered_with_their_exits_and_costs(served):
    client, _ = served
    models = {m["label"]: m for m in client.get("/api/models").json()}
    assert list(models) == ["mask", "bloom@l=1", "bloom@l=2", "bloom@l=3", "bloom"]
    assert models["bloom@l=1"]["macs_per_second_exact"] < models["bloom"]["macs_per_second_exact"]
    assert models["mask"]["params"] == sum(p.numel() for p in build_model("tiny-mask-rnn").parameters())
    assert "<input type=\"file\"" in client.get("/").text


def test_an_upload_comes_back_enhanced_at_its_own_rate_and_length(served, tmp_path):
    client, enhancer = served
    response = client.post("/api/enhance?model=bloom@l=2", content=wav_upload(rate=22050, channels=2))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "bloom@l=2" and answer["noisy_spectrogram"].startswith("data:image/png;base64,")
    enhanced = client.get(answer["enhanced_url"])
    wav, rate = sf.read(io.BytesIO(enhanced.content))
    assert rate == 22050 and len(wav) == 22050 and np.abs(wav).max() > 0
    # Nothing is written anywhere but the private folder, and only its own names are served.
    assert sorted(p.name for p in enhancer.folder.iterdir()) == sorted(
        u.split("/")[-1] for u in (answer["noisy_url"], answer["enhanced_url"]))
    assert client.get("/files/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/files/" + answer["enhanced_url"].split("/")[-1].replace("enhanced", "x")).status_code == 404


def test_large_uploads_non_audio_and_unknown_models_are_refused_with_a_message(served):
    client, enhancer = served
    too_big = client.post("/api/enhance?model=mask", content=b"\x00" * 200_001)
    assert too_big.status_code == 413 and "larger than 0.2 MB" in too_big.json()["error"]
    text = client.post("/api/enhance?model=mask", content=b"<html>not audio</html>")
    assert text.status_code == 415 and "not audio" in text.json()["error"]
    unknown = client.post("/api/enhance?model=nope", content=wav_upload())
    assert unknown.status_code == 400 and "unknown model 'nope'" in unknown.json()["error"]
    silent = io.BytesIO()
    sf.write(silent, np.zeros(16000, np.float32), 16000, format="WAV")
    assert client.post("/api/enhance?model=mask", content=silent.getvalue()).status_code == 400
    assert list(enhancer.folder.iterdir()) == []

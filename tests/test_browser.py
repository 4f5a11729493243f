"""report.html and the ``leanse serve`` page in a real browser: headless Chromium from Debian's
packages (``.ci/run`` installs ``chromium``), driven by Playwright pointed at that binary (it never
downloads a browser). The players must load and play (the media element reports a duration), and
a file uploaded to the served page must come back enhanced. Screenshots go to the test's temp
folder."""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import torch

from leanse.checkpoint import save_checkpoint
from leanse.compare import compare_models
from leanse.models import build_model

from conftest import voiced

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The closed network: no background requests, no component or sync updates, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--autoplay-policy=no-user-gesture-required"]

if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    # CI installs it (.ci/run) and must run these tests; elsewhere say what is missing.
    pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")


@pytest.fixture()
def browser_page(tmp_path):
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield context.new_page()
        finally:
            context.close()


PLAYERS_READY = "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 && a.duration > 0)"


def test_report_html_players_load_and_play_offline(tmp_path, voicebank_root, browser_page):
    torch.manual_seed(0)
    mask = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "mask")
    compare_models([str(mask)], voicebank_root, tmp_path / "out", peers=["rnnoise"], workers=0, dnsmos=False,
                   rtf=False, samples=2, limit=4)
    page = browser_page
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((tmp_path / "out" / "report.html").as_uri())
    page.wait_for_function(PLAYERS_READY, timeout=20_000)
    durations = page.evaluate("() => [...document.querySelectorAll('audio')].map(a => a.duration)")
    systems = page.evaluate("() => [...document.querySelectorAll('audio')].map(a => a.dataset.system)")
    assert systems == ["noisy input", "mask", "RNNoise", "clean reference"] * 2
    # Every player holds its whole file: the noisy input, both outputs and the reference are as long.
    for start in (0, 4):
        assert len(set(durations[start:start + 4])) == 1 and 1.4 < durations[start] < 3.0
    played = page.evaluate("""async () => { const a = document.querySelectorAll('audio')[1]; await a.play();
        await new Promise(r => setTimeout(r, 400)); return [a.paused, a.currentTime]; }""")
    assert played[0] is False and played[1] > 0.1
    images = page.evaluate("() => [...document.images].map(i => i.naturalWidth)")
    assert len(images) == 2 * 4 + 2 and min(images) > 100  # spectrograms and plots decoded
    assert all(url.startswith(("file:", "data:")) for url in requests)  # nothing from the network
    page.locator(".sample").first.screenshot(path=str(tmp_path / "report-players.png"))
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_served_page_enhances_an_uploaded_file(tmp_path, browser_page):
    import uvicorn

    from leanse.serve import Enhancer, build_app

    torch.manual_seed(0)
    bloom = save_checkpoint(build_model({"preset": "tiny-bloom", "sample_rate": 16000}), tmp_path / "bloom")
    enhancer = Enhancer([str(bloom)], max_bytes=2_000_000, rtf=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(enhancer), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 15
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        upload = tmp_path / "my recording.wav"
        rng = np.random.default_rng(0)
        wav = voiced(16000, 2.0, 140.0, rng) + 0.02 * rng.standard_normal(32000).astype(np.float32)
        sf.write(upload, wav, 16000)
        page = browser_page
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
        assert page.eval_on_selector_all("#model option", "els => els.map(e => e.value)") == [
            "bloom@l=1", "bloom@l=2", "bloom@l=3", "bloom"]
        page.select_option("#model", "bloom@l=2")
        page.set_input_files("#file", str(upload))
        page.click("#go")
        page.wait_for_selector("#result", state="visible", timeout=30_000)
        page.wait_for_function(PLAYERS_READY, timeout=20_000)
        durations = page.evaluate("() => [...document.querySelectorAll('audio')].map(a => a.duration)")
        assert durations == [pytest.approx(2.0, abs=0.01)] * 2
        assert "done: 2.0 s of audio" in page.inner_text("#status")
        assert "M" in page.inner_text("#cost")  # MACs/s of the chosen exit
        href = page.get_attribute("#download", "href")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{href}") as response:
            enhanced, rate = sf.read(io.BytesIO(response.read()))
        assert rate == 16000 and len(enhanced) == len(wav) and not np.allclose(enhanced, wav)
        # A non-audio file gets the page's clear message, not a crash.
        (tmp_path / "notes.txt").write_text("not audio")
        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        page.click("#go")
        page.wait_for_function("() => document.getElementById('error').textContent.length > 0")
        assert "not audio" in page.inner_text("#error")
        page.set_input_files("#file", str(upload))
        page.click("#go")
        page.wait_for_function("() => document.getElementById('error').textContent === '' && "
                               "document.getElementById('status').textContent.startsWith('done')")
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not enhancer.folder.exists()

"""``leanse serve``: a local page to hear a model on your own audio (optional extra ``leanse[serve]``).

A small Starlette app run by uvicorn. The page lets a user drop, choose or record a file, pick a
model (a scalable model's exits are offered as models of their own), and hear noisy vs enhanced
with both spectrograms and the model's MACs/s, RTF and latency (from :mod:`leanse.complexity`,
via :meth:`leanse.compare.systems.System.cost`).

Safety: it listens on 127.0.0.1 unless told otherwise; an upload is read into memory up to
``max_bytes`` (a larger one is refused with 413 before it is read further), decoded in memory
(anything libsndfile cannot decode is refused with 415), and the only files written are the WAVs
of the results, inside one private temporary folder that is removed at exit. Result names are
random tokens, and only names in that folder's own index are ever served.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from leanse.compare.systems import System, is_scalable, load_system
from leanse.errors import ConfigError, LeanseError

#: Longest audio accepted (seconds): the page is for listening, not for batch jobs.
MAX_SECONDS = 120.0
#: Results kept in the temporary folder before the oldest are deleted.
KEEP_RESULTS = 32


def default_specs() -> list[str]:
    from leanse.pretrained import bundled_models

    return list(bundled_models()) or ["rnnoise"]


def with_exits(systems: list[System]) -> list[System]:
    """Each scalable model once per exit (``RUN@l=1`` ... all blocks), sharing one set of weights."""
    out = []
    for system in systems:
        blocks = getattr(system.model, "num_blocks", None)
        if system.kind == "leanse" and blocks and is_scalable(system.model) and "blocks" not in system.forward_kwargs:
            for exit_blocks in range(1, int(blocks)):
                out.append(System(f"{system.spec}@l={exit_blocks}", f"{system.label}@l={exit_blocks}",
                                  system.model, system.kind, {"blocks": exit_blocks}))
        out.append(system)
    return out


class Enhancer:
    """The app's state: the models, their costs, and the private folder of results."""

    def __init__(self, specs: list[str] | None, max_bytes: int, rtf: bool = True) -> None:
        from leanse.compare.systems import unique_labels

        systems = with_exits([load_system(spec) for spec in (specs or default_specs())])
        unique_labels(systems)
        self.systems = {s.label: s for s in systems}
        self.costs = {label: s.cost(rtf=rtf) for label, s in self.systems.items()}
        self.max_bytes = int(max_bytes)
        self.folder = Path(tempfile.mkdtemp(prefix="leanse-serve-"))
        self.results: OrderedDict[str, Path] = OrderedDict()
        self.lock = threading.Lock()  # one enhancement at a time: the CPU is the limit anyway

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def models(self) -> list[dict[str, Any]]:
        return [{"label": label, "kind": s.kind, "sample_rate": s.sample_rate, **self.costs[label]}
                for label, s in self.systems.items()]

    def enhance(self, data: bytes, label: str) -> dict[str, Any]:
        """Decode ``data``, enhance it with model ``label``, store both WAVs; the page's JSON."""
        import soundfile as sf

        from leanse.audio import check_signal
        from leanse.compare.html import spectrogram_png, wav_bytes, data_uri
        from leanse.enhance import enhance_waveform

        system = self.systems.get(label)
        if system is None:
            raise ConfigError(f"unknown model {label!r}; choose one of {', '.join(self.systems)}")
        try:
            wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # [T, C]
        except Exception:  # libsndfile says "format not recognised" in many ways
            raise UnsupportedAudio("this file is not audio leanse can read; upload a wav, flac or ogg file") from None
        wav = wav.mean(axis=1)
        if len(wav) > MAX_SECONDS * rate:
            raise TooLarge(f"the audio is {len(wav) / rate:.0f} s long; the page takes up to {MAX_SECONDS:.0f} s")
        check_signal(wav, "the uploaded audio")
        with self.lock:
            start = time.perf_counter()
            enhanced = enhance_waveform(system.model, wav, rate, **system.forward_kwargs)
            seconds = time.perf_counter() - start
        token = secrets.token_hex(16)
        names = {"noisy": f"{token}-noisy.wav", "enhanced": f"{token}-enhanced.wav"}
        for key, signal in (("noisy", wav), ("enhanced", enhanced)):
            path = self.folder / names[key]
            path.write_bytes(wav_bytes(signal, rate))
            self.results[names[key]] = path
        while len(self.results) > 2 * KEEP_RESULTS:
            _, old = self.results.popitem(last=False)
            old.unlink(missing_ok=True)
        return {
            "model": label,
            "sample_rate": rate,
            "seconds": len(wav) / rate,
            "rtf_this_file": seconds / (len(wav) / rate),
            "noisy_url": f"/files/{names['noisy']}",
            "enhanced_url": f"/files/{names['enhanced']}",
            "noisy_spectrogram": data_uri(spectrogram_png(wav, rate, "noisy"), "image/png"),
            "enhanced_spectrogram": data_uri(spectrogram_png(enhanced, rate, f"enhanced: {label}"), "image/png"),
            "cost": self.costs[label],
        }


class UnsupportedAudio(LeanseError):
    """An upload that is not audio."""


class TooLarge(LeanseError):
    """An upload over the size or length limit."""


def build_app(enhancer: Enhancer) -> Any:
    """The Starlette app: ``/`` (the page), ``/api/models``, ``POST /api/enhance?model=``, ``/files/NAME``."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import FileResponse, HTMLResponse, JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise ConfigError("leanse serve needs its extra: pip install 'leanse[serve]'") from None

    async def page(request: Any) -> Any:
        return HTMLResponse(PAGE.replace("__MAX_MB__", f"{enhancer.max_bytes / 1e6:g}"))

    async def models(request: Any) -> Any:
        return JSONResponse(enhancer.models())

    async def enhance(request: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > enhancer.max_bytes:
            return _error(413, _too_big(enhancer.max_bytes))
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a lying header cannot get past
            body += chunk
            if len(body) > enhancer.max_bytes:
                return _error(413, _too_big(enhancer.max_bytes))
        if not body:
            return _error(400, "empty upload: choose, drop or record an audio file")
        try:
            result = await run_in_threadpool(enhancer.enhance, bytes(body), request.query_params.get("model", ""))
        except UnsupportedAudio as err:
            return _error(415, str(err))
        except TooLarge as err:
            return _error(413, str(err))
        except LeanseError as err:
            return _error(400, str(err))
        return JSONResponse(result)

    async def files(request: Any) -> Any:
        path = enhancer.results.get(request.path_params["name"])  # only names this server wrote
        if path is None or not path.is_file():
            return _error(404, "no such result (results are kept for the last few enhancements only)")
        return FileResponse(path, media_type="audio/wav", filename=path.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        try:
            yield
        finally:
            enhancer.close()  # the private folder goes with the server

    app = Starlette(routes=[
        Route("/", page),
        Route("/api/models", models),
        Route("/api/enhance", enhance, methods=["POST"]),
        Route("/files/{name}", files),
    ], lifespan=lifespan)
    app.state.enhancer = enhancer
    return app


def _too_big(limit: int) -> str:
    return f"the file is larger than {limit / 1e6:g} MB; trim it or start the server with a larger --max-mb"


def _error(status: int, message: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def serve(specs: list[str] | None, host: str = "127.0.0.1", port: int = 8000, max_bytes: int = 20_000_000) -> None:
    """Load the models, then serve the page until interrupted (the temporary folder is removed)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("leanse serve needs its extra: pip install 'leanse[serve]'") from None
    enhancer = Enhancer(specs, max_bytes)
    app = build_app(enhancer)
    print(f"leanse serve: {len(enhancer.systems)} models; open http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    # uvicorn stops gracefully on SIGTERM, then re-raises it with the handler it found: make that
    # handler an exception, so the block below still runs (the default action would kill at once).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # The folder is removed here, not by the app's lifespan: uvicorn cancels the lifespan task
        # on Ctrl-C and logs that as an error, while this block runs on every way out.
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
    except KeyboardInterrupt:
        pass
    finally:
        enhancer.close()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>leanse serve</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
#drop { border: 2px dashed #999; padding: 1.5em; text-align: center; margin: 1em 0; }
#drop.over { background: #eef; }
.pane { display: inline-block; vertical-align: top; width: 470px; margin-right: 1em; }
.pane img, .pane audio { width: 470px; }
#error { color: #b00; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; }
</style></head><body>
<h1>leanse: hear a model on your audio</h1>
<p>Everything runs on this computer. Files up to __MAX_MB__ MB (wav, flac, ogg).</p>
<label>Model <select id="model"></select></label>
<div id="drop">Drop an audio file here, or <input type="file" id="file" accept="audio/*,.wav,.flac,.ogg">
 or <button id="record">record</button></div>
<button id="go" disabled>Enhance</button> <span id="status"></span>
<p id="error"></p>
<table id="cost"></table>
<div id="result" hidden>
 <div class="pane"><h3>noisy</h3><audio id="noisy" controls></audio><img id="noisy_spec" alt="noisy spectrogram"></div>
 <div class="pane"><h3>enhanced</h3><audio id="enhanced" controls></audio><img id="enhanced_spec" alt="enhanced spectrogram">
 <a id="download" download>download the enhanced file</a></div>
</div>
<script>
let chosen = null, models = [];
const $ = (id) => document.getElementById(id);
const fmt = (v, f) => v === null || v === undefined ? "-" : f(v);
function showCost() {
  const m = models.find((x) => x.label === $("model").value);
  if (!m) return;
  $("cost").innerHTML = "<tr><th>params</th><th>MACs/s (paper)</th><th>MACs/s (exact)</th><th>RTF, 1 thread</th><th>latency</th></tr>" +
    `<tr><td>${fmt(m.params, (v) => v.toLocaleString())}</td><td>${fmt(m.macs_per_second_paper, (v) => (v / 1e6).toFixed(1) + "M")}</td>` +
    `<td>${fmt(m.macs_per_second_exact, (v) => (v / 1e6).toFixed(1) + "M")}</td><td>${fmt(m.rtf, (v) => v.toFixed(4))}</td>` +
    `<td>${fmt(m.latency_ms, (v) => v.toFixed(1) + " ms")}</td></tr>`;
}
fetch("/api/models").then((r) => r.json()).then((list) => {
  models = list;
  for (const m of list) { const o = document.createElement("option"); o.value = o.textContent = m.label; $("model").append(o); }
  showCost();
});
$("model").onchange = showCost;
function choose(blob, name) { chosen = blob; $("go").disabled = false; $("status").textContent = name; }
$("file").onchange = (e) => { if (e.target.files[0]) choose(e.target.files[0], e.target.files[0].name); };
$("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
$("drop").ondragleave = () => $("drop").classList.remove("over");
$("drop").ondrop = (e) => { e.preventDefault(); $("drop").classList.remove("over");
  if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0], e.dataTransfer.files[0].name); };
// Recording: the browser records compressed audio; decode it here and upload 16-bit WAV.
function wavBlob(buffer) {
  const x = buffer.getChannelData(0), rate = buffer.sampleRate, out = new DataView(new ArrayBuffer(44 + 2 * x.length));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); out.setUint32(4, 36 + 2 * x.length, true); text(8, "WAVEfmt "); out.setUint32(16, 16, true);
  out.setUint16(20, 1, true); out.setUint16(22, 1, true); out.setUint32(24, rate, true); out.setUint32(28, 2 * rate, true);
  out.setUint16(32, 2, true); out.setUint16(34, 16, true); text(36, "data"); out.setUint32(40, 2 * x.length, true);
  for (let i = 0; i < x.length; i++) out.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x[i])) * 32767, true);
  return new Blob([out], { type: "audio/wav" });
}
let recorder = null;
$("record").onclick = async () => {
  if (recorder) { recorder.stop(); return; }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const parts = []; recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop()); recorder = null; $("record").textContent = "record";
    const audio = await new AudioContext().decodeAudioData(await new Blob(parts).arrayBuffer());
    choose(wavBlob(audio), "recording.wav");
  };
  recorder.start(); $("record").textContent = "stop";
};
$("go").onclick = async () => {
  $("error").textContent = ""; $("status").textContent = "enhancing...";
  const response = await fetch("/api/enhance?model=" + encodeURIComponent($("model").value), { method: "POST", body: chosen });
  const answer = await response.json();
  if (!response.ok) { $("error").textContent = answer.error; $("status").textContent = ""; return; }
  $("noisy").src = answer.noisy_url; $("enhanced").src = answer.enhanced_url; $("download").href = answer.enhanced_url;
  $("noisy_spec").src = answer.noisy_spectrogram; $("enhanced_spec").src = answer.enhanced_spectrogram;
  $("result").hidden = false;
  $("status").textContent = `done: ${answer.seconds.toFixed(1)} s of audio, RTF ${answer.rtf_this_file.toFixed(3)} on this file`;
};
</script></body></html>
"""

__all__ = ["Enhancer", "build_app", "serve"]

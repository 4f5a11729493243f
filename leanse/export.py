"""ONNX export with parity checks, and the onnxruntime engines that run the exported files.

``leanse export CHECKPOINT -o model.onnx [--stream] [--int8]`` writes

* the **offline graph** (``wav [B, T] -> enhanced [B, T]``, batch and time dynamic), or with
  ``--stream`` the **step graph** (``x_hop [1, hop]`` + the state tensors as named inputs ->
  ``y_hop`` + the next state as outputs ``next_<name>``, one stream);
* ``model.json`` beside it: hop, latency, state names and shapes, sample rate, the model config,
  the SHA-256 of the ONNX file (so a sidecar of another export is refused), and the parity
  measured at export.

Exporter: ``torch.onnx.export(..., dynamo=False)`` at opset 17 -- the TorchScript exporter,
pinned because GRU under the newer dynamo exporter was reported to lose ``linear_before_reset``
silently (issue 9); a GRU parity test guards it. The TorchScript exporter has no FFT, so STFTs
become matrix products / convolutions with a DFT basis (exact to float rounding; in eager mode the
step uses ``torch.fft``). Every export checks itself, as DeepFilterNet's export script does:
``onnx.checker``, then onnxruntime against PyTorch (offline: 1 s of noise; step graph: 200 steps
carrying state, every output and state compared); a failed check deletes nothing the user had and
writes nothing.

``--int8``: onnxruntime dynamic quantization of ``MatMul`` and ``LSTM`` weights (``Conv`` is left
out: ``ConvInteger`` is slow on CPU; onnxruntime has no dynamic-quantized GRU, so a GRU stays fp32
and only its dense layers and the DFT products are quantized).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanse.errors import LeanseError
from leanse.models.streaming import (
    NotStreamableError,
    State,
    StateError,
    real_dft_basis,
    real_idft_basis,
)

OPSET = 17
FORMAT = "leanse-onnx"
PARITY_STEPS = 200
#: fp32 parity tolerances of issue 9 (1e-4 where an STFT is inside the graph)
STEP_ATOL, STEP_RTOL = 1e-5, 1e-4
OFFLINE_ATOL = 1e-4


class ExportError(LeanseError):
    """A model that cannot be exported, or an export that fails its own parity check."""


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    return Path(onnx_path).with_suffix(".json")


# ------------------------------------------------------------------------------------------
# Exportable wrappers
# ------------------------------------------------------------------------------------------


class OfflineGraph(nn.Module):
    """The offline forward of a frame model with its STFT as convolutions (exportable).

    ``conv1d`` with the windowed DFT basis as kernels (stride ``hop``) is the STFT; a transposed
    convolution with the synthesis basis is the inverse DFT plus overlap-add; the window envelope
    the same way; the padding as offline (reflection for ``center=True``, zeros for 004).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        framing = model.stream_framing
        self.n_fft, self.hop, self.pad = framing.n_fft, framing.hop, framing.pad
        self.reflect = framing.reflect
        self.floor = framing.envelope_floor
        self.time_frames = framing.transform == "none"
        if self.time_frames:  # frames themselves (TCNN): identity kernels times the window
            identity = torch.diag(framing.window)[:, None].contiguous()  # [n, 1, n]
            self.register_buffer("analysis", identity)
            self.register_buffer("synthesis", identity.clone())
        else:
            cos, sin = real_dft_basis(self.n_fft, framing.window)  # [n, F]
            icos, isin = real_idft_basis(self.n_fft, framing.window)  # [F, n]
            self.register_buffer("analysis", torch.cat([cos, sin], 1).T[:, None].contiguous())  # [2F,1,n]
            self.register_buffer("synthesis", torch.cat([icos, isin], 0)[:, None].contiguous())  # [2F,1,n]
        self.register_buffer("window_sq", framing.window.square()[None, None].contiguous())  # [1,1,n]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, T]``."""
        length = wav.shape[-1]
        x = wav[:, None]  # [B, 1, T]
        if self.reflect:
            x = nn.functional.pad(x, (self.pad, self.pad), mode="reflect")
        else:  # 004: zeros, and enough at the end to complete the last hop
            x = nn.functional.pad(x, (self.pad, self.pad + self.hop - 1))
        spec = nn.functional.conv1d(x, self.analysis, stride=self.hop)  # [B, 2F, N]
        if self.time_frames:  # [B, n, N] frames
            spec = self.model.core_sequence(spec.transpose(1, 2)).transpose(1, 2)
        else:
            bins = spec.shape[1] // 2
            re, im = self.model.core_sequence(spec[:, :bins].transpose(1, 2),
                                              spec[:, bins:].transpose(1, 2))  # [B, N, F] each
            spec = torch.cat([re, im], dim=2).transpose(1, 2)  # [B, 2F, N]
        signal = nn.functional.conv_transpose1d(spec, self.synthesis, stride=self.hop)  # [B,1,L]
        ones = torch.ones_like(spec[:1, :1])  # [1, 1, N]
        envelope = nn.functional.conv_transpose1d(ones, self.window_sq, stride=self.hop)
        out = signal / envelope.clamp_min(self.floor)
        return out[:, 0, self.pad : self.pad + length]


class StepGraph(nn.Module):
    """``(x_hop, *state) -> (y_hop, *next_state)``: a model's ``step`` with positional state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_hop: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y_hop, next_state = self.model.step(x_hop, tuple(state))
        return (y_hop, *next_state)


def offline_graph(model: nn.Module) -> nn.Module:
    """The module to export for the offline graph: the model itself where its forward exports,
    the convolutional-STFT twin for STFT models."""
    if hasattr(model, "core_sequence"):
        return OfflineGraph(model)
    return model


# ------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: str | os.PathLike, stream: bool = False,
                int8: bool = False, meta: dict[str, Any] | None = None,
                quality_mixtures: list | None = None,
                packed_sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Export ``model`` to ``path`` (+ ``path.with_suffix('.json')``), verify, return the sidecar.

    With ``int8`` and ``quality_mixtures`` (a fixed test list, :func:`fixed_test_mixtures`), the fp32
    and int8 graphs both enhance every mixture and the sidecar's ``int8_quality`` gives their
    mean SI-SDR and PESQ and the change.

    A compressed model (a packed checkpoint, loaded by :func:`leanse.checkpoint.load_checkpoint`
    with its weights dequantized) exports those dense weights: ONNX has no codebook / sparse
    position format that onnxruntime runs. ``packed_sizes``
    (:func:`leanse.compress.packed.packed_disk_sizes`) puts the packed size next to the ONNX size
    in the sidecar's ``compressed`` section.
    """
    import onnx

    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx")
    if path.exists() and path.is_dir():
        raise ExportError(f"{path}: is a folder; give a file name ending in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if stream:
        model._require_streamable()
    ensemble = hasattr(model, "specialists") and hasattr(model, "gate")
    if ensemble or (stream and not model.step_exports_to_onnx):
        # a hard-gated ensemble routes in Python (offline per utterance, streaming per block of
        # frames): one traced graph would freeze the route of its example, so the gate and each
        # specialist become separate graphs, with a dispatcher
        from leanse.ensemble.export import export_ensemble, export_ensemble_offline

        export = export_ensemble if stream else export_ensemble_offline
        sidecar = export(model, path, int8=int8, meta=meta)
        if packed_sizes is not None:  # the gate graph and every specialist's graph
            sidecar["compressed"] = _compressed_report(packed_sizes, sidecar["onnx_bytes_all_graphs"])
            _write_json(sidecar_path(path), sidecar)
        return sidecar

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad(), _export_errors(model):
            if stream:
                names = model.state_names
                state = model.init_state(1)
                torch.onnx.export(
                    StepGraph(model).eval(), (torch.zeros(1, model.hop), *state), str(tmp),
                    dynamo=False, opset_version=OPSET,
                    input_names=["x_hop", *names],
                    output_names=["y_hop", *[f"next_{n}" for n in names]],
                )
            else:
                # a separation model's output is [B, S, T]: time is its last axis
                time_axis = 1 if int(getattr(model, "num_sources", 1)) == 1 else 2
                torch.onnx.export(
                    offline_graph(model).eval(), (0.1 * torch.randn(1, model.sample_rate),), str(tmp),
                    dynamo=False, opset_version=OPSET, input_names=["wav"],
                    output_names=["enhanced"],
                    dynamic_axes={"wav": {0: "batch", 1: "time"},
                                  "enhanced": {0: "batch", time_axis: "time"}},
                )
        onnx.checker.check_model(str(tmp))
        fp32 = None
        if int8:
            fp32 = tmp.with_name(tmp.name + ".fp32")
            os.replace(tmp, fp32)
            quantize_int8(fp32, tmp)
        sidecar: dict[str, Any] = {
            "format": FORMAT,
            "version": 1,
            "graph": "step" if stream else "offline",
            "onnx_file": path.name,
            "sha256": _sha256(tmp),
            "sample_rate": int(model.sample_rate),
            # outputs per input signal: the graph returns [B, S, T] (y_hop [1, S, hop]) when > 1
            "num_sources": int(getattr(model, "num_sources", 1)),
            "model": model.config,
            "int8": bool(int8),
            "exporter": f"torch.onnx.export(dynamo=False) opset {OPSET}, torch {torch.__version__}",
            "meta": meta or {},
        }
        if stream:
            sidecar["stream"] = model.stream_info()
            initial = model.init_state(1)
            if any(bool(t.any()) for t in initial):  # dual-path models start after a pre-roll
                sidecar["initial_state"] = {name: t.tolist()
                                            for name, t in zip(model.state_names, initial)}
            sidecar["inputs"] = ["x_hop", *model.state_names]
            sidecar["outputs"] = ["y_hop", *[f"next_{n}" for n in model.state_names]]
        else:
            sidecar["stream"] = model.stream_info() if model.streamable else None
            sidecar["inputs"], sidecar["outputs"] = ["wav"], ["enhanced"]
        sidecar["parity"] = check_parity(model, tmp, sidecar, strict=not int8)
        if fp32 is not None:
            sidecar["parity"]["fp32_bytes"] = fp32.stat().st_size
            if quality_mixtures:
                sidecar["int8_quality"] = int8_quality(
                    graph_runner(fp32, sidecar), graph_runner(tmp, sidecar), quality_mixtures)
            fp32.unlink()
        sidecar["onnx_bytes"] = tmp.stat().st_size
        if packed_sizes is not None:
            sidecar["compressed"] = _compressed_report(packed_sizes, sidecar["onnx_bytes"])
        os.replace(tmp, path)
        _write_json(sidecar_path(path), sidecar)
        return sidecar
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".fp32").unlink(missing_ok=True)


def _compressed_report(packed_sizes: dict[str, int], onnx_bytes: int) -> dict[str, Any]:
    """The sidecar's ``compressed`` section: ONNX bytes next to the packed checkpoint's bytes."""
    return {"weights": "dequantized (dense float32 in the graph)", "onnx_bytes": int(onnx_bytes),
            **{k: int(v) for k, v in packed_sizes.items()},
            "onnx_over_packed": float(onnx_bytes / max(packed_sizes["packed_folder_bytes"], 1))}


@contextlib.contextmanager
def _export_errors(model: nn.Module):
    try:
        with warnings.catch_warnings():
            # the tracer's notes on Python-level shape checks (constant for one hop) and on
            # batch_first RNNs are expected; the parity check below is what decides
            warnings.simplefilter("ignore")
            yield
    except LeanseError:
        raise
    except Exception as err:  # the exporter's own errors: one line naming the unsupported part
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{model.config.get('name')} does not export to ONNX ({first[:200]})") from None


def graph_runner(onnx_file: Path, sidecar: dict[str, Any]):
    """``[T] -> [T]`` numpy function running an exported graph (offline, or streamed)."""
    if sidecar["graph"] == "offline":
        session = make_session(onnx_file)
        return lambda wav: session.run(["enhanced"], {"wav": wav[None].astype(np.float32)})[0][0]
    from leanse.streaming import Streamer

    engine = OnnxStepEngine(onnx_file, sidecar)

    def run(wav: np.ndarray) -> np.ndarray:
        streamer = Streamer(engine)
        return np.concatenate([streamer.feed(wav.astype(np.float32)), streamer.flush()])

    return run


def int8_quality(run_fp32, run_int8, mixtures: list) -> dict[str, Any]:
    """Mean SI-SDR (dB) and PESQ of the fp32 and the int8 graph on the same mixtures."""
    from leanse.metrics import pesq_score, si_sdr

    scores: dict[str, list[float]] = {k: [] for k in ("si_sdr_fp32", "si_sdr_int8", "pesq_fp32",
                                                      "pesq_int8")}
    for mixture in mixtures:
        for label, run in (("fp32", run_fp32), ("int8", run_int8)):
            estimate = run(np.asarray(mixture.noisy, np.float32))
            scores[f"si_sdr_{label}"].append(float(si_sdr(estimate, mixture.clean)))
            pesq = pesq_score(mixture.clean, estimate, mixture.sample_rate)
            if pesq is not None:
                scores[f"pesq_{label}"].append(float(pesq))
    means = {k: float(np.mean(v)) if v else None for k, v in scores.items()}
    report: dict[str, Any] = {"mixtures": len(mixtures), **means}
    for metric in ("si_sdr", "pesq"):
        a, b = means[f"{metric}_fp32"], means[f"{metric}_int8"]
        report[f"{metric}_change"] = None if a is None or b is None else b - a
    return report


def fixed_test_mixtures(data: Path, sample_rate: int, list_path: Path | None = None,
                  test_size: int | None = None) -> list:
    """The fixed test list of a recipe or corpus folder (as ``leanse evaluate`` reads it)."""
    from leanse.config import from_dict, load_yaml
    from leanse.data.datamodule import DataConfig, build_mixers, fixed_mixtures
    from leanse.data.mixing import read_specs
    from leanse.errors import ConfigError

    data = Path(data)
    if data.is_file():
        recipe = load_yaml(data)
        config = from_dict(DataConfig, recipe.get("data", recipe), "data")
    elif data.is_dir():
        config = DataConfig(corpus="librispeech", root=str(data), sample_rate=sample_rate,
                            snrs=[-5.0, 0.0, 5.0, 10.0])
    else:
        raise ConfigError(f"--data {data}: no such recipe file or corpus folder")
    if config.sample_rate != sample_rate:
        raise ConfigError(f"the model runs at {sample_rate} Hz but the data is at {config.sample_rate} Hz")
    if test_size:
        config.test_size = test_size
    mixers = build_mixers(config)
    specs = read_specs(list_path) if list_path else mixers.test_specs
    if test_size:
        specs = specs[:test_size]
    return fixed_mixtures(mixers.test, specs)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of MatMul and LSTM weights (Conv stays fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul", "LSTM"],
                     weight_type=QuantType.QInt8)


def check_parity(model: nn.Module, onnx_file: Path, sidecar: dict[str, Any],
                 strict: bool = True) -> dict[str, Any]:
    """Run the exported file in onnxruntime against PyTorch; raise if it differs (``strict``)."""
    generator = torch.Generator().manual_seed(0)
    if sidecar["graph"] == "offline":
        wav = 0.3 * torch.randn(2, model.sample_rate + 123, generator=generator)
        with torch.no_grad():
            reference = model(wav).numpy()
        session = make_session(onnx_file)
        out = session.run(None, {"wav": wav.numpy()})[0]
        error = float(np.abs(out - reference).max())
        if strict and not np.allclose(out, reference, atol=OFFLINE_ATOL, rtol=STEP_RTOL):
            raise ExportError(f"the exported offline graph differs from PyTorch by {error:.2e}"
                              f" (tolerance {OFFLINE_ATOL}); not written")
        return {"checked": "offline, 2 x (1 s + 123 samples)", "max_abs_error": error}
    engine = OnnxStepEngine(onnx_file, sidecar)
    framing = getattr(model, "stream_framing", None) if hasattr(model, "build_stream_framing") else None
    atol = OFFLINE_ATOL if framing is not None and framing.transform == "rfft" else STEP_ATOL
    steps = PARITY_STEPS
    x = 0.3 * torch.randn(1, steps * model.hop, generator=generator)
    torch_state, onnx_state = model.init_state(1), engine.init_state(1)
    worst = worst_output = 0.0
    with torch.no_grad():
        for k in range(steps):
            x_hop = x[:, k * model.hop : (k + 1) * model.hop]
            y_ref, torch_state = model.step(x_hop, torch_state)
            y_onnx, onnx_state = engine.step(x_hop, onnx_state)
            reference = dict(zip(engine.state_names, torch_state))
            for name, a, b in zip(["y_hop", *engine.state_names], (y_ref, *torch_state),
                                  (y_onnx, *onnx_state)):
                a, b = a.numpy(), b.numpy()
                if a.dtype.kind != "f":
                    if strict and not np.array_equal(a, b):
                        raise ExportError(f"the exported step graph differs from PyTorch at step {k}"
                                          f" in {name}; not written")
                    continue
                error = float(np.abs(a - b).max()) if a.size else 0.0
                worst = max(worst, error)
                if name == "y_hop":  # every source of a separation model
                    worst_output = max(worst_output, error)
                if strict and error > atol + STEP_RTOL * _state_scale(name, a, reference):
                    raise ExportError(
                        f"the exported step graph differs from PyTorch at step {k} in {name}"
                        f" (max {error:.2e}); not written")
    # max_abs_error covers the state too (a cumulative norm's running sums grow with the stream:
    # their rounding is measured relative to them); output_max_abs_error is y_hop's alone
    return {"checked": f"step graph, {steps} steps, outputs and state", "max_abs_error": worst,
            "output_max_abs_error": worst_output, "atol": atol}


# ------------------------------------------------------------------------------------------
# Running exported files
# ------------------------------------------------------------------------------------------


def make_session(onnx_file: str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session: ``threads`` intra-op threads, 1 inter-op, sequential, no
    spinning (what a real-time loop on a small device wants; the benchmark's setting)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])


def read_sidecar(onnx_file: str | os.PathLike, expect: str | None = None) -> dict[str, Any]:
    """The JSON beside an exported file, checked to belong to it."""
    onnx_file = Path(onnx_file)
    if not onnx_file.is_file():
        raise ExportError(f"{onnx_file}: no such ONNX file")
    side = sidecar_path(onnx_file)
    try:
        sidecar = json.loads(side.read_text())
    except FileNotFoundError:
        raise ExportError(f"{onnx_file}: its {side.name} (hop, latency, state names) is missing;"
                          " export again with leanse export") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{side}: unreadable ({err}); export again with leanse export") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise ExportError(f"{side}: not written by leanse export; export again")
    if sidecar.get("sha256") != _sha256(onnx_file):
        raise ExportError(f"{side} belongs to another export than {onnx_file.name}; keep each"
                          " .onnx with its own .json (export again)")
    if expect is not None and sidecar.get("graph") != expect:
        hint = "add --stream to leanse export" if expect == "step" else "export without --stream"
        raise ExportError(f"{onnx_file} holds the {sidecar.get('graph')} graph, this needs the"
                          f" {expect} graph; {hint}")
    return sidecar


class OnnxStepEngine:
    """An exported step graph with the interface of a streamable model (for :class:`Streamer`)."""

    def __init__(self, onnx_file: str | os.PathLike, sidecar: dict[str, Any] | None = None,
                 threads: int = 1) -> None:
        self.sidecar = sidecar if sidecar is not None else read_sidecar(onnx_file, "step")
        self.info = self.sidecar["stream"]
        self.session = make_session(onnx_file, threads)
        self.state_names = [entry["name"] for entry in self.info["state"]]
        self.hop = int(self.info["hop"])
        self.sample_rate = int(self.info["sample_rate"])
        self.output_names = ["y_hop", *[f"next_{n}" for n in self.state_names]]

    def stream_info(self) -> dict[str, Any]:
        return self.info

    def init_state(self, batch: int = 1) -> State:
        if batch != 1:
            raise ExportError("an exported step graph runs one stream (batch 1)")
        initial = self.sidecar.get("initial_state") or {}
        return tuple(torch.tensor(initial[entry["name"]], dtype=getattr(torch, entry["dtype"]))
                     if entry["name"] in initial else
                     torch.zeros(entry["shape"], dtype=getattr(torch, entry["dtype"]))
                     for entry in self.info["state"])

    def step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if len(state) != len(self.state_names):
            raise StateError(f"this step graph takes {len(self.state_names)} state tensors, got"
                             f" {len(state)}; start from init_state()")
        feeds = {"x_hop": np.ascontiguousarray(x_hop, dtype=np.float32)}
        feeds.update({name: np.asarray(value) for name, value in zip(self.state_names, state)})
        outputs = self.session.run(self.output_names, feeds)
        return torch.from_numpy(outputs[0]), tuple(torch.from_numpy(o) for o in outputs[1:])


def _state_scale(name: str, value: np.ndarray, state: dict[str, torch.Tensor]) -> float:
    """The magnitude a tensor's rounding error is measured against (rtol is relative to it).

    Outputs: their largest magnitude. States: at least 1 (an LSTM cell state grown to ~80 carries
    rounding of that size into its small elements too). A running sum of a cumulative norm
    (``*_sum``) adds ``count`` terms that cancel towards 0 while the rounding of another
    summation order accumulates with the terms' size: ``sqrt(count * sum of squares)`` bounds it.
    """
    scale = float(np.abs(value).max()) if value.size else 0.0
    if name == "y_hop":
        return scale
    scale = max(scale, 1.0)
    if name.endswith("_sum"):
        squares, count = state.get(name + "_sq"), state.get(name[: -len("_sum")] + "_count")
        if squares is not None and count is not None:
            scale = max(scale, float(np.sqrt(np.abs(squares.numpy()).max() * float(count.max()))))
    return scale


def step_engine(onnx_file: str | os.PathLike, threads: int = 1) -> Any:
    """The step engine of an exported stream: one step graph, or an ensemble's dispatcher."""
    sidecar = read_sidecar(onnx_file)
    if sidecar.get("graph") == "ensemble_step":
        from leanse.ensemble.export import OnnxEnsembleEngine

        return OnnxEnsembleEngine(onnx_file, sidecar, threads)
    if sidecar.get("graph") != "step":
        raise ExportError(f"{onnx_file} holds the offline graph; export with --stream to stream")
    return OnnxStepEngine(onnx_file, sidecar, threads)


class OnnxOfflineModel:
    """An exported offline graph behind the ``[B, T] -> [B, T]`` call of a model (for enhance)."""

    def __init__(self, onnx_file: str | os.PathLike, threads: int = 1) -> None:
        sidecar = read_sidecar(onnx_file)
        self.dispatcher = None
        if sidecar.get("graph") == "ensemble_offline":  # gate graph + specialists' graphs
            from leanse.ensemble.export import OnnxOfflineEnsemble

            self.dispatcher = OnnxOfflineEnsemble(onnx_file, sidecar, threads)
        else:
            sidecar = read_sidecar(onnx_file, "offline")
            self.session = make_session(onnx_file, threads)
        self.sidecar = sidecar
        self.sample_rate = int(self.sidecar["sample_rate"])
        # a separation model's graph returns [B, S, T]; enhance then needs --source, as offline
        self.num_sources = int(self.sidecar.get("num_sources", 1))

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        if self.dispatcher is not None:
            return self.dispatcher(wav)
        out = self.session.run(["enhanced"], {"wav": np.ascontiguousarray(wav, dtype=np.float32)})
        return torch.from_numpy(out[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, document: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        Path(tmp).write_text(json.dumps(document, indent=2, default=str))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["export_onnx", "OnnxStepEngine", "OnnxOfflineModel", "read_sidecar", "ExportError",
           "NotStreamableError"]

"""ONNX export of a streaming hard-gated ensemble: separate graphs and a small dispatcher.

One graph that runs every specialist and selects would lose the point of papers 000/001 (K
specialists' cost instead of one). So ``leanse export ENSEMBLE --stream -o ens.onnx`` writes

* ``ens.onnx``: the **gate step** -- ``x_hop``, the shared front end's ``frame_counter`` and
  ``analysis_buffer``, the gate RNN state -> ``logits``, ``valid`` (a frame exists), next gate state;
* ``ens.specialist{k}.onnx``: each specialist's own step graph (:func:`leanse.export.export_onnx`);
* ``ens.json``: the dispatcher's sidecar (decision period, files and their SHA-256).

:class:`OnnxEnsembleEngine` is the dispatcher: per hop it runs the gate graph and the chosen
specialist's graph only -- cost gate + one specialist, as in PyTorch
(:mod:`leanse.ensemble.streaming`). The front end's state (analysis and overlap-add buffers) is
shared: whichever specialist runs takes it and hands it on, so a switch is seamless; the newly
chosen specialist's own state starts from its initial state.

Offline (``leanse export ENSEMBLE -o ens.onnx``, no ``--stream``) the same split: ``ens.onnx``
is the gate's offline graph (``wav [B, T] -> logits [B, K]``), ``ens.specialist{k}.onnx`` each
specialist's offline graph, and :class:`OnnxOfflineEnsemble` routes each utterance to the argmax
(000 eq. 3) -- again gate + one specialist per utterance, not K. ``leanse enhance --engine onnx``
runs it like any offline export.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanse.ensemble.streaming import _gate_parts
from leanse.export import (
    OPSET,
    ExportError,
    OnnxStepEngine,
    _export_errors,
    _sha256,
    _write_json,
    export_onnx,
    make_session,
    sidecar_path,
)
from leanse.models.streaming import State, masked_update, real_dft_basis, rnn_state_specs, rnn_step

FRONT = ("frame_counter", "analysis_buffer", "ola_signal", "ola_envelope")


def specialist_files(onnx_file: Path, sidecar: dict) -> list[Path]:
    """The specialists' graph files of an ensemble export, each checked against its sha256."""
    files = []
    for entry in sidecar["specialists"]:
        file = onnx_file.with_name(entry["file"])
        if not file.is_file() or _sha256(file) != entry["sha256"]:
            raise ExportError(f"{file}: missing or not the specialist exported with {onnx_file.name};"
                              " keep the files of one export together (export again)")
        files.append(file)
    return files


def _export_specialists(model: nn.Module, path: Path, stream: bool, int8: bool,
                        written: list[Path]) -> list[dict[str, str]]:
    """Each specialist's own graph (offline or step, checked by :func:`export_onnx`) beside the
    gate's ``path``; its files are appended to ``written`` so a failed export removes them."""
    specialists = []
    for k, expert in enumerate(model.specialists):
        target = path.with_name(f"{path.stem}.specialist{k}.onnx")
        side = export_onnx(expert, target, stream=stream, int8=int8)
        written += [target, sidecar_path(target)]
        specialists.append({"file": target.name, "sha256": side["sha256"]})
    return specialists


def _bytes_with_specialists(gate_file: Path, path: Path, specialists: list[dict[str, str]]) -> int:
    """Bytes of the gate's graph (``gate_file``, written or still temporary) and of every
    specialist's graph beside ``path``."""
    return gate_file.stat().st_size + sum(path.with_name(e["file"]).stat().st_size for e in specialists)


class GateStepGraph(nn.Module):
    """The gate's frame step on the ensemble's front end (exportable)."""

    def __init__(self, ensemble: nn.Module) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.rnn, self.head = _gate_parts(ensemble.gate)

    def forward(self, x_hop: torch.Tensor, counter: torch.Tensor, buffer: torch.Tensor,
                *gate_state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zeros = torch.zeros_like(buffer)
        features, index, _ = self.ensemble.stream_framing.analyse(x_hop, (counter, buffer, zeros, zeros))
        valid = index >= 0
        re, im = features
        hidden, new_state = rnn_step(self.rnn, torch.sqrt(re * re + im * im), tuple(gate_state))
        new_state = masked_update(valid, new_state, tuple(gate_state))
        return (self.head(hidden), valid.to(torch.int64), *new_state)


def export_ensemble(model: nn.Module, path: str | os.PathLike, int8: bool = False,
                    meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the gate graph at ``path``, one step graph per specialist beside it, and the sidecar."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx")
    model = model.eval()
    model._require_streamable()
    rnn, _ = _gate_parts(model.gate)
    gate_names = [s.name for s in rnn_state_specs("gate", rnn, 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        specialists = _export_specialists(model, path, True, int8, written)
        state = model.init_state(1)
        counter, buffer = state[0], state[1]
        gate_state = model.init_state(1)[4 : 4 + len(gate_names)]
        with torch.no_grad(), _export_errors(model):
            torch.onnx.export(
                GateStepGraph(model).eval(), (torch.zeros(1, model.hop), counter, buffer, *gate_state),
                str(path), dynamo=False, opset_version=OPSET,
                input_names=["x_hop", "frame_counter", "analysis_buffer", *gate_names],
                output_names=["logits", "valid", *[f"next_{n}" for n in gate_names]])
        written.append(path)
        model.eval()
        sidecar = {
            "format": "leanse-onnx", "version": 1, "graph": "ensemble_step",
            "onnx_file": path.name, "sha256": _sha256(path), "sample_rate": int(model.sample_rate),
            "model": model.config, "int8": bool(int8), "meta": meta or {},
            "stream": model.stream_info(), "gate_state": gate_names,
            "decision_frames": int(model.decision_frames), "specialists": specialists,
            "onnx_bytes": path.stat().st_size,
            "onnx_bytes_all_graphs": _bytes_with_specialists(path, path, specialists),
            "dispatch": "gate graph every hop; the chosen specialist's graph only (cost: gate + one"
                        " specialist); a new choice starts that specialist from its initial state",
        }
        engine = OnnxEnsembleEngine(path, sidecar)
        sidecar["parity"] = _ensemble_parity(model, engine)
        _write_json(sidecar_path(path), sidecar)
        return sidecar
    except BaseException:
        for file in written:
            file.unlink(missing_ok=True)
        raise


def _ensemble_parity(model: nn.Module, engine: "OnnxEnsembleEngine", steps: int = 200) -> dict:
    """PyTorch's streaming ensemble against the dispatcher, hop by hop, every output and state."""
    generator = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(1, steps * model.hop, generator=generator)
    torch_state, onnx_state = model.init_state(1), engine.init_state(1)
    worst, choices = 0.0, set()
    with torch.no_grad():
        for k in range(steps):
            x_hop = x[:, k * model.hop : (k + 1) * model.hop]
            y_ref, torch_state = model.step(x_hop, torch_state)
            y_onnx, onnx_state = engine.step(x_hop, onnx_state)
            for a, b in zip((y_ref, *torch_state), (y_onnx, *onnx_state)):
                a, b = a.numpy(), b.numpy()
                if a.dtype.kind == "f" and a.size:
                    worst = max(worst, float(np.abs(a - b).max()))
            choices.add(int(engine.choice_of(onnx_state)))
            if not np.allclose(y_ref.numpy(), y_onnx.numpy(), atol=1e-4, rtol=1e-4):
                raise ExportError(f"the exported ensemble differs from PyTorch at step {k}; not written")
    return {"checked": f"dispatcher, {steps} steps", "max_abs_error": worst,
            "specialists_used": sorted(choices)}


class OnnxEnsembleEngine:
    """The dispatcher: a step engine (for :class:`~leanse.streaming.Streamer`) over the graphs."""

    def __init__(self, onnx_file: str | os.PathLike, sidecar: dict[str, Any], threads: int = 1) -> None:
        onnx_file = Path(onnx_file)
        self.sidecar = sidecar
        self.info = sidecar["stream"]
        self.names = [entry["name"] for entry in self.info["state"]]
        self.gate_names = list(sidecar["gate_state"])
        self.decision_frames = int(sidecar["decision_frames"])
        self.gate = make_session(onnx_file, threads)
        self.specialists = [OnnxStepEngine(file, threads=threads) for file in specialist_files(onnx_file, sidecar)]
        self.hop = int(self.info["hop"])
        self.sample_rate = int(self.info["sample_rate"])

    def stream_info(self) -> dict[str, Any]:
        return self.info

    def init_state(self, batch: int = 1) -> State:
        if batch != 1:
            raise ExportError("an exported ensemble runs one stream (batch 1)")
        front = self.specialists[0].init_state(1)[:4]
        gate = tuple(torch.zeros(entry["shape"]) for entry in self.info["state"]
                     if entry["name"] in self.gate_names)
        cores = tuple(t for engine in self.specialists for t in engine.init_state(1)[4:])
        return (*front, *gate, torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64),
                *cores)

    def choice_of(self, state: State) -> int:
        return int(state[4 + len(self.gate_names)])

    def step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        g = len(self.gate_names)
        front, gate_state = state[:4], state[4 : 4 + g]
        choice, count, cores = state[4 + g], state[5 + g], list(state[6 + g :])
        feeds = {"x_hop": np.asarray(x_hop, np.float32), "frame_counter": np.asarray(front[0]),
                 "analysis_buffer": np.asarray(front[1])}
        feeds.update({n: np.asarray(t) for n, t in zip(self.gate_names, gate_state)})
        logits, valid, *new_gate = self.gate.run(None, feeds)
        valid = bool(valid.reshape(-1)[0])
        new_choice = int(choice)
        if valid and int(count) == 0:
            new_choice = int(np.argmax(logits.reshape(-1)))
        sizes = [len(engine.state_names) - 4 for engine in self.specialists]
        start = sum(sizes[:new_choice])
        own = tuple(cores[start : start + sizes[new_choice]])
        if new_choice != int(choice):
            own = self.specialists[new_choice].init_state(1)[4:]
        y_hop, new_state = self.specialists[new_choice].step(x_hop, (*front, *own))
        cores[start : start + sizes[new_choice]] = new_state[4:]
        new_count = (int(count) + 1) % self.decision_frames if valid else int(count)
        return y_hop, (*new_state[:4], *(torch.from_numpy(t) for t in new_gate),
                       torch.tensor([new_choice]), torch.tensor([new_count]), *cores)


# ------------------------------------------------------------------------------------------
# Offline: the gate graph on the whole utterance, then the chosen specialist's offline graph
# ------------------------------------------------------------------------------------------


class GateOfflineGraph(nn.Module):
    """The gate's offline forward, ``wav [B, T] -> logits [B, K]`` (000 eq. 3 before the argmax),
    with its STFT (``torch.stft(center=True)``, Hann) as one strided convolution: the TorchScript
    exporter has no complex STFT (see :mod:`leanse.export`)."""

    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        stft = getattr(gate, "stft", None)
        if stft is None:  # SpeakerGate: the STFT belongs to its embedding f
            stft = gate.embedding.stft
        self.n_fft, self.hop = int(stft.n_fft), int(stft.hop_length)
        cos, sin = real_dft_basis(self.n_fft, stft.window)  # [n, F] each
        self.register_buffer("analysis", torch.cat([cos, sin], 1).T[:, None].contiguous())  # [2F,1,n]
        self.rnn, self.head = _gate_parts(gate)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(wav[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        spec = nn.functional.conv1d(x, self.analysis, stride=self.hop)  # [B, 2F, N]
        bins = spec.shape[1] // 2
        re, im = spec[:, :bins], spec[:, bins:]
        magnitude = torch.sqrt(re * re + im * im).transpose(1, 2)  # [B, N, F]
        hidden, _ = self.rnn(magnitude)  # [B, N, H]
        return self.head(hidden[:, -1])  # last frame: [B, K]


def export_ensemble_offline(model: nn.Module, path: str | os.PathLike, int8: bool = False,
                            meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the gate's offline graph at ``path``, each specialist's offline graph beside it and
    the sidecar; :class:`OnnxOfflineEnsemble` dispatches (cost: gate + one specialist per
    utterance, as :meth:`~leanse.ensemble.sparse.SparseEnsemble.forward` in hard mode)."""
    import onnx

    from leanse.export import quantize_int8

    path = Path(path)
    model = model.eval()
    if model.mode != "hard" or _gate_parts(model.gate) is None:
        raise ExportError(f"only a hard-gated ensemble with an RNN gate exports (mode is"
                          f" {model.mode!r}); set mode: hard")
    path.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    gate_tmp = path.with_name(f".{path.name}.gate.tmp")
    try:
        specialists = _export_specialists(model, path, False, int8, written)
        with torch.no_grad(), _export_errors(model):
            torch.onnx.export(
                GateOfflineGraph(model.gate).eval(), (0.1 * torch.randn(1, model.sample_rate),),
                str(gate_tmp), dynamo=False, opset_version=OPSET, input_names=["wav"],
                output_names=["logits"],
                dynamic_axes={"wav": {0: "batch", 1: "time"}, "logits": {0: "batch"}})
        onnx.checker.check_model(str(gate_tmp))
        if int8:
            fp32 = gate_tmp.with_name(gate_tmp.name + ".fp32")
            os.replace(gate_tmp, fp32)
            try:
                quantize_int8(fp32, gate_tmp)
            finally:
                fp32.unlink(missing_ok=True)
        sidecar = {
            "format": "leanse-onnx", "version": 1, "graph": "ensemble_offline",
            "onnx_file": path.name, "sha256": _sha256(gate_tmp), "sample_rate": int(model.sample_rate),
            "model": model.config, "int8": bool(int8), "meta": meta or {},
            "stream": None, "specialists": specialists, "inputs": ["wav"], "outputs": ["logits"],
            "onnx_bytes": gate_tmp.stat().st_size,
            "dispatch": "gate graph on the whole utterance, argmax, then the chosen specialist's"
                        " offline graph only (cost: gate + one specialist per utterance)",
        }
        sidecar["onnx_bytes_all_graphs"] = _bytes_with_specialists(gate_tmp, path, specialists)
        engine = OnnxOfflineEnsemble(gate_tmp, sidecar)
        sidecar["parity"] = _ensemble_offline_parity(model, engine, strict=not int8)
        os.replace(gate_tmp, path)
        written.append(path)
        _write_json(sidecar_path(path), sidecar)
        return sidecar
    except BaseException:
        for file in written:
            file.unlink(missing_ok=True)
        raise
    finally:
        gate_tmp.unlink(missing_ok=True)


def _ensemble_offline_parity(model: nn.Module, engine: "OnnxOfflineEnsemble",
                             strict: bool = True) -> dict[str, Any]:
    """The dispatcher against PyTorch's hard-gated forward: the routes and every output sample.
    Three utterances at different levels, so a gate that tells levels apart routes them apart."""
    generator = torch.Generator().manual_seed(0)
    wav = 0.3 * torch.randn(3, model.sample_rate + 123, generator=generator)
    wav = wav * torch.tensor([[0.1], [1.0], [3.0]])
    with torch.no_grad():
        reference = model(wav).numpy()
        routes = model.last_routing.tolist()
    out = engine(wav).numpy()
    error = float(np.abs(out - reference).max())
    if strict and (engine.last_routing.tolist() != routes
                   or not np.allclose(out, reference, atol=1e-4, rtol=1e-4)):
        raise ExportError(f"the exported ensemble differs from PyTorch (routes"
                          f" {engine.last_routing.tolist()} vs {routes}, max {error:.2e}); not written")
    return {"checked": "offline, 3 x (1 s + 123 samples), routes and outputs",
            "max_abs_error": error, "specialists_used": sorted(set(routes))}


class OnnxOfflineEnsemble:
    """The offline dispatcher: ``[B, T] -> [B, T]``, each utterance through the gate graph and
    then only its chosen specialist's graph (000 eq. 3)."""

    def __init__(self, onnx_file: str | os.PathLike, sidecar: dict[str, Any], threads: int = 1) -> None:
        from leanse.export import OnnxOfflineModel

        onnx_file = Path(onnx_file)
        self.sidecar = sidecar
        self.gate = make_session(onnx_file, threads)
        self.specialists = [OnnxOfflineModel(file, threads=threads) for file in specialist_files(onnx_file, sidecar)]
        self.sample_rate = int(sidecar["sample_rate"])
        self.num_sources = 1
        self.last_routing = np.zeros(0, np.int64)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        routing = self.gate.run(["logits"], {"wav": wav})[0].argmax(-1)  # [B]
        out = np.empty_like(wav)
        for k in np.unique(routing):  # only the specialists that were chosen run
            index = np.nonzero(routing == k)[0]
            out[index] = self.specialists[int(k)](wav[index]).numpy()
        self.last_routing = routing
        return torch.from_numpy(out)

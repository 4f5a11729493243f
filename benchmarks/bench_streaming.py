"""Streaming cost at one thread: per-hop latency, real-time factor, MAC rate against the machine's.

For each model: the PyTorch eager ``step`` and the exported ONNX step graph in onnxruntime (1
intra-op and 1 inter-op thread, sequential, no spinning), fp32 and int8 (dynamic quantization of
MatMul/LSTM; GRU stays fp32 in onnxruntime), each stepping ``--seconds`` of seeded noise hop by
hop with its state. Printed: the median and 99th percentile of one step's wall time, the RTF
(total step time / audio time), the model's MACs per second of audio (offline forward, thop
``exact`` convention: the STFT is not counted; the ONNX step graph adds its DFT matrix products),
the MAC rate that RTF implies (MACs/s / RTF) and its fraction of the 1-core float32 GEMM peak
measured in the same run (a 1024 x 1024 ``torch.mm``). An "offline" row per model runs the
whole signal in one PyTorch forward (median of 3 after a warm-up): the issue's target is to stay
within 3x of the MAC bound (time >= MACs / peak), i.e. a fraction of peak >= 0.33. Under it, for
models with GRUs / LSTMs, the recurrence's share: its step-by-step hidden products timed bare at
their real shapes (:func:`recurrence_floor`), which no implementation of the model can avoid, and
the bound they give with the rest of the MACs at GEMM peak.

Targets of issue 9: a GRU 2x256 mask net (``gru-mask-256x2-8k``) streams at RTF <= 0.03 in
PyTorch and <= 0.01 in onnxruntime. The machine is shared: run it when nothing else does, and
read the numbers as this machine's, not a device's.

``--groupcomm`` also profiles where the offline time of a causal GroupComm goes (PyTorch
profiler, operators by self CPU time) next to DPRNN-TasNet's.

    python benchmarks/bench_streaming.py                   # the issue's list
    python benchmarks/bench_streaming.py --models gru-mask-256x2-8k --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from leanse.complexity import count_macs, measure_rtf
from leanse.export import export_onnx, make_session
from leanse.models import build_model

#: (label, model config, streaming exit) -- the issue's list
MODELS = [
    ("gru-mask-256x2-8k", "gru-mask-256x2-8k", None),
    ("tiny-mask-rnn", "tiny-mask-rnn", None),
    ("lstm-mask-512x2", "lstm-mask-512x2", None),
    ("speaker-ensemble-k5-gru-256x2-8k (hard)", "speaker-ensemble-k5-gru-256x2-8k", None),
    ("bloom-l6 causal, exit 1", {"preset": "bloom-l6", "causal": True}, 1),
    ("bloom-l6 causal, exit 6", {"preset": "bloom-l6", "causal": True}, 6),
    ("groupcomm-k16-n128-l6 causal", {"preset": "groupcomm-k16-n128-l6", "causal": True,
                                      "num_sources": 1}, None),
    ("dprnn-tasnet causal", {"preset": "dprnn-tasnet", "causal": True, "num_sources": 1}, None),
    # the two-talker separation preset as 002 trains it (causal variant): both sources per step
    ("dprnn-tasnet causal, 2 talkers", {"preset": "dprnn-tasnet", "causal": True}, None),
]


def gemm_peak(repeats: int = 7) -> float:
    """1-thread float32 GEMM rate in MAC/s (median of ``repeats`` 1024^3 products)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 1024**3 / statistics.median(times)


def _recurrences(model, x: torch.Tensor, kwargs: dict) -> list[tuple[torch.nn.RNNBase, int, int]]:
    """Every GRU / LSTM that one forward runs, with its batch and number of steps."""
    seen: list[tuple[torch.nn.RNNBase, int, int]] = []

    def hook(module, inputs, _output):
        data = inputs[0]  # [B, T, F] (batch_first) or [T, B, F]
        batch, steps = (data.shape[0], data.shape[1]) if module.batch_first else (data.shape[1], data.shape[0])
        seen.append((module, int(batch), int(steps)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.GRU, torch.nn.LSTM))]
    try:
        with torch.no_grad():
            model(x, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def recurrence_floor(model, x: torch.Tensor, kwargs: dict, repeats: int = 3) -> tuple[float, float, set[int]]:
    """Why a recurrent net cannot reach the GEMM peak: the time its recurrences take as bare matrix
    products, their MACs, and the batch sizes they run at.

    Step t of a GRU / LSTM needs step t-1's output, so its hidden-to-hidden product runs once per
    step as a ``[B, H] x [H, G*H]`` product (G = 3 gates for a GRU, 4 for an LSTM), and with
    B = 1 (a mask net on one file) that is a matrix-vector product: bound by memory traffic and call
    overhead, far below the 1024^3 GEMM rate. Each step's product is timed bare (``torch.addmm``,
    median of ``repeats`` loops over the real number of steps); the input-to-hidden products are
    batched over time by PyTorch and are left to the GEMM-peak part of the bound.
    """
    floor = recurrent_macs = 0.0
    timed: dict[tuple[int, int, int], float] = {}
    recurrences = _recurrences(model, x, kwargs)
    for module, batch, steps in recurrences:
        gates = 4 if isinstance(module, torch.nn.LSTM) else 3
        hidden = module.hidden_size
        paths = module.num_layers * (2 if module.bidirectional else 1)
        key = (batch, hidden, gates)
        if key not in timed:
            h, weight, bias = torch.randn(batch, hidden), torch.randn(hidden, gates * hidden), torch.randn(gates * hidden)
            loops = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                for _ in range(steps):
                    torch.addmm(bias, h, weight)
                loops.append((time.perf_counter() - start) / steps)
            timed[key] = statistics.median(loops[1:])
        floor += paths * steps * timed[key]
        recurrent_macs += paths * steps * batch * hidden * gates * hidden
    return floor, recurrent_macs, {batch for _, batch, _ in recurrences}


def step_times_torch(model, x: torch.Tensor) -> list[float]:
    hop = model.hop
    state = model.init_state(1)
    times = []
    with torch.no_grad():
        for k in range(x.shape[1] // hop):
            x_hop = x[:, k * hop : (k + 1) * hop]
            start = time.perf_counter()
            _, state = model.step(x_hop, state)
            times.append(time.perf_counter() - start)
    return times


def step_times_onnx(path: Path, sidecar: dict, x: np.ndarray) -> list[float]:
    session = make_session(path, threads=1)
    info = sidecar["stream"]
    names = [s["name"] for s in info["state"]]
    initial = sidecar.get("initial_state") or {}
    state = [np.asarray(initial[s["name"]], dtype=s["dtype"]) if s["name"] in initial
             else np.zeros(s["shape"], dtype=s["dtype"]) for s in info["state"]]
    outputs = ["y_hop", *[f"next_{n}" for n in names]]
    hop = info["hop"]
    times = []
    for k in range(x.shape[1] // hop):
        feeds = {"x_hop": x[:, k * hop : (k + 1) * hop], **dict(zip(names, state))}
        start = time.perf_counter()
        result = session.run(outputs, feeds)
        times.append(time.perf_counter() - start)
        state = result[1:]
    return times


def row(label: str, engine: str, times: list[float], audio_seconds: float, macs_per_second: float,
        peak: float, hop_ms: float | None) -> str:
    warm = times[min(5, len(times) - 1):]  # the first steps allocate
    rtf = sum(warm) / (audio_seconds * len(warm) / len(times))
    # the median step over the hop: what an unloaded machine sustains (the mean above also
    # carries every time the scheduler took the core away)
    rtf50 = statistics.median(warm) / (1e-3 * hop_ms) if hop_ms else rtf
    rate = macs_per_second / rtf if rtf > 0 else float("nan")
    if hop_ms is None:
        latency = f"{'-':>9} {'-':>9}"
    else:
        latency = (f"{1e3 * statistics.median(warm):9.3f} "
                   f"{1e3 * float(np.percentile(warm, 99)):9.3f}")
    return (f"{label:<42} {engine:<14} {latency} {rtf:8.4f} {macs_per_second / 1e6:9.1f}"
            f" {rate / 1e9:7.2f} {rate / peak:6.3f} {rtf50:8.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="labels or preset names")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--groupcomm", action="store_true", help="profile GroupComm vs DPRNN")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1) if hasattr(torch, "set_num_interop_threads") else None
    chosen = [m for m in MODELS if args.models is None or m[0] in args.models
              or m[1] in args.models]
    peak = gemm_peak()
    print(f"1-thread float32 GEMM peak (1024^3 torch.mm): {peak / 1e9:.1f} GMAC/s")
    print(f"{'model':<42} {'engine':<14} {'p50 ms':>9} {'p99 ms':>9} {'RTF':>8}"
          f" {'MMAC/s':>9} {'GMAC/s':>7} {'peak':>6} {'RTF p50':>8}")
    workdir = Path(tempfile.mkdtemp(prefix="bench_streaming_"))
    for label, config, exit_block in chosen:
        torch.manual_seed(0)
        model = build_model(config).eval()
        rate = model.sample_rate
        x = 0.3 * torch.randn(1, int(args.seconds * rate), generator=torch.Generator().manual_seed(0))
        kwargs = {"blocks": exit_block} if exit_block else {}
        macs = count_macs(model, 1.0, "exact", **kwargs)  # per second of audio
        offline = measure_rtf(model, args.seconds, repeats=3, **kwargs) * args.seconds  # median, after a warm-up
        print(row(label, "torch offline", [offline], args.seconds, macs, peak, None))
        floor, recurrent_macs, batches = recurrence_floor(model, x, kwargs)
        if floor > 0:
            bound = floor + (macs * args.seconds - recurrent_macs) / peak
            print(f"{'':<42} (recurrence: {recurrent_macs / (macs * args.seconds):.0%} of the MACs as batch-"
                  f"{'/'.join(sorted(str(b) for b in batches))} steps;"
                  f" bare matrix products of its steps {floor:.3f} s = {floor / offline:.0%} of the offline time;"
                  f" with the rest at GEMM peak the bound is {bound:.3f} s, {bound / offline:.2f} of it)")
        if not model.streamable:
            print(f"{'':<42} (no streaming: {model.not_streamable_reason()})")
            continue
        if exit_block:  # the stream's exit, and 16 encoder frames (128 samples, 8 ms) per hop
            model.streamer(blocks=exit_block, frames_per_hop=16)
        hop_ms = 1e3 * model.hop / rate
        print(row(label + f" (hop {hop_ms:.1f} ms)", "torch step", step_times_torch(model, x),
                  args.seconds, macs, peak, hop_ms))
        if args.no_onnx or not model.step_exports_to_onnx:
            if not model.step_exports_to_onnx:
                print(f"{'':<42} (ensemble step routes in Python: no single ONNX step graph)")
            continue
        for int8 in (False, True):
            path = workdir / f"{len(label)}-{int8}.onnx"
            sidecar = export_onnx(model, path, stream=True, int8=int8)
            times = step_times_onnx(path, sidecar, x.numpy())
            print(row(label, f"ort {'int8' if int8 else 'fp32'}", times, args.seconds, macs, peak,
                      hop_ms))
    if args.groupcomm:
        profile_groupcomm(args.seconds)
    return 0


def profile_groupcomm(seconds: float) -> None:
    """Where the offline time of GroupComm vs DPRNN-TasNet goes (operators by self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    for name in ("groupcomm-k16-n128-l6", "dprnn-tasnet"):
        model = build_model({"preset": name, "causal": True, "num_sources": 1}).eval()
        x = 0.3 * torch.randn(1, int(seconds * model.sample_rate))
        macs = count_macs(model, seconds, "exact")
        with torch.no_grad():
            model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                start = time.perf_counter()
                model(x)
                wall = time.perf_counter() - start
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{name}: {macs / 1e9:.2f} GMAC in {wall:.2f} s = {macs / wall / 1e9:.2f} GMAC/s")
        for event in events[:6]:
            print(f"  {event.key:<34} {100 * event.self_cpu_time_total / total:5.1f} %"
                  f"  calls {event.count:>7}  {event.self_cpu_time_total / max(event.count, 1):8.1f} us/call")


if __name__ == "__main__":
    sys.exit(main())

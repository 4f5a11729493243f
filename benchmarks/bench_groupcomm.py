"""Where GroupComm-DPRNN-TasNet's time goes on one CPU thread, next to DPRNN-TasNet's (issue 9).

002's GroupComm k16-n128-l6 has ~2.3x fewer MACs than DPRNN-TasNet but runs slower on a CPU. This
prints, for both models, one offline forward over ``--seconds`` of seeded noise at one thread:

1. **Per path**: the wall time of each kind of LSTM (timed by forward hooks around every
   ``nn.LSTM`` call) and of everything else (encoder, norms, linear projections, the layout copies
   between paths, decoder), with each LSTM kind's shape, MACs and MAC rate. LSTM MACs are
   counted as ``sequences x steps x directions x 4H x (I + H)`` (the gate matrix products).
2. **LSTM kernel rate against its size**: one bidirectional ``nn.LSTM(H/2, H)`` (the ratio both
   models use, ``I = H/2``) over 512 sequences of 100 steps, for H = 16 .. 128: its MAC rate and
   its time per hidden unit and step. The GEMM peak (a 1024^3 ``torch.mm``) is measured in the
   same run.

What it shows (the printed conclusion is computed from the measured numbers of the run): an
LSTM step costs, per hidden unit, ``4 (I + H)`` MACs *plus* work that MACs do not count (four
gate nonlinearities, the cell update, reading and writing the gates). DPRNN's units (H = 128,
I = 64) have 768 MACs each to amortise it, GroupComm's (H = 2M = 16, I = M = 8) only 96, so a
GroupComm unit costs far more time per MAC. And GroupComm updates *more* hidden units than
DPRNN-TasNet, not fewer: three LSTM paths per block instead of two (the BLSTM across groups), and
K x 2M = 256 units per direction and frame in each, against DPRNN's 128. Its MACs are lower only
because each unit reads few inputs. So its run time follows its hidden-unit updates, not its
MACs. Folding the K groups into the batch (what :class:`~leanse.models.groupcomm.GroupCommBlock`
already does: one LSTM call over ``B*K`` sequences with shared weights) leaves no per-group or
per-step Python overhead to remove. What remains is inside the oneDNN LSTM kernel. (PyTorch's
non-oneDNN LSTM, ``torch.backends.mkldnn.flags(enabled=False)``, is slower still: 1.6-1.7 s vs
0.62-0.67 s for 2 s of input when this was written.)

    python benchmarks/bench_groupcomm.py
    python benchmarks/bench_groupcomm.py --seconds 4 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

import torch
from torch import nn

from bench_streaming import gemm_peak  # one GEMM-peak measurement for every benchmark
from leanse.complexity import count_macs
from leanse.models import build_model

MODELS = ["dprnn-tasnet", "groupcomm-k16-n128-l6"]
#: module-path suffix of each LSTM -> what it runs over
PATHS = {
    "group_comm.rnn.rnn": "group comm (BLSTM across the K groups of a frame)",
    "intra_rnn.rnn": "intra-chunk (along the 2T frames of a chunk)",
    "inter_rnn.rnn": "inter-chunk (along the S chunks)",
}


def lstm_macs(lstm: nn.LSTM, x: torch.Tensor) -> int:
    """Gate matrix products of one call: sequences x steps x dirs x 4H x (I + H)."""
    sequences, steps = (x.shape[0], x.shape[1]) if lstm.batch_first else (x.shape[1], x.shape[0])
    directions = 2 if lstm.bidirectional else 1
    hidden = lstm.hidden_size
    return sequences * steps * directions * 4 * hidden * (lstm.input_size + hidden)


def path_of(name: str) -> str:
    return next((label for suffix, label in PATHS.items() if name.endswith(suffix)), name)


def breakdown(model: nn.Module, wav: torch.Tensor, repeats: int) -> tuple[float, dict]:
    """Median forward time and, per LSTM path, (calls, shape, MACs, median time)."""
    records: dict[str, list] = defaultdict(list)  # path -> [(macs, seconds, shape)] per forward
    started: dict[int, float] = {}

    def before(module, args):
        started[id(module)] = time.perf_counter()

    def after(module, args, output, name):
        x = args[0]
        records[path_of(name)].append((lstm_macs(module, x), time.perf_counter() - started[id(module)],
                                       (int(x.shape[0]), int(x.shape[1]), module.input_size,
                                        module.hidden_size, 2 if module.bidirectional else 1)))

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM):
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(
                lambda m, a, o, name=name: after(m, a, o, name)))
    totals, per_path = [], defaultdict(list)
    with torch.no_grad():
        model(wav)  # warm-up
        for _ in range(repeats):
            records.clear()
            start = time.perf_counter()
            model(wav)
            totals.append(time.perf_counter() - start)
            for path, calls in records.items():
                per_path[path].append((len(calls), calls[0][2], sum(c[0] for c in calls),
                                       sum(c[1] for c in calls)))
    for handle in handles:
        handle.remove()
    summary = {}
    for path, runs in per_path.items():
        calls, shape, macs, _ = runs[0]
        summary[path] = (calls, shape, macs, statistics.median(r[3] for r in runs))
    return statistics.median(totals), summary


def unit_steps(calls: int, shape: tuple[int, int, int, int, int]) -> int:
    """Hidden units updated by ``calls`` LSTM calls of ``shape`` (sequences, steps, I, H, dirs)."""
    sequences, steps, _, hidden, directions = shape
    return calls * sequences * steps * hidden * directions


def kernel_rate(hidden: int, sequences: int = 512, steps: int = 100, repeats: int = 5
                ) -> tuple[float, float]:
    """(MAC/s, ns per hidden unit and step) of a bidirectional LSTM(H/2, H)."""
    torch.manual_seed(0)
    lstm = nn.LSTM(hidden // 2, hidden, batch_first=True, bidirectional=True).eval()
    x = torch.randn(sequences, steps, hidden // 2)
    times = []
    with torch.no_grad():
        lstm(x)
        for _ in range(repeats):
            start = time.perf_counter()
            lstm(x)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    units = sequences * steps * 2 * hidden  # hidden units updated (both directions)
    return lstm_macs(lstm, x) / seconds, 1e9 * seconds / units


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    peak = gemm_peak()
    print(f"1 thread; 1-thread float32 GEMM peak (1024^3 torch.mm): {peak / 1e9:.1f} GMAC/s")
    print(f"offline forward over {args.seconds:g} s at 16 kHz, median of {args.repeats}\n")
    rates: dict[str, float] = {}
    lstm: dict[str, tuple[float, int, int]] = {}
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name).eval()
        wav = 0.1 * torch.randn(1, int(args.seconds * model.sample_rate),
                                generator=torch.Generator().manual_seed(0))
        macs = count_macs(model, args.seconds, "paper")
        total, paths = breakdown(model, wav, args.repeats)
        rates[name] = macs / total
        print(f"{name}: {macs / 1e9:.2f} GMAC (paper convention) in {total:.3f} s ="
              f" {macs / total / 1e9:.1f} GMAC/s ({macs / total / peak:.2f} of the GEMM peak)")
        print(f"  {'path':<50} {'calls':>5} {'sequences x steps, I, H, dirs':>30} {'GMAC':>6}"
              f" {'units M':>8} {'time s':>7} {'share':>6} {'GMAC/s':>7} {'ns/unit':>7}")
        lstm_time, lstm_units, lstm_macs_total = 0.0, 0, 0
        for path, (calls, shape, path_macs, seconds) in paths.items():
            units = unit_steps(calls, shape)
            lstm_time, lstm_units, lstm_macs_total = (lstm_time + seconds, lstm_units + units,
                                                      lstm_macs_total + path_macs)
            n, t, i, h, d = shape
            print(f"  {path:<50} {calls:>5} {f'{n} x {t}, {i}, {h}, {d}':>30} {path_macs / 1e9:6.2f}"
                  f" {units / 1e6:8.1f} {seconds:7.3f} {seconds / total:6.1%}"
                  f" {path_macs / seconds / 1e9:7.1f} {1e9 * seconds / units:7.1f}")
        lstm[name] = (lstm_time, lstm_units, lstm_macs_total)
        print(f"  {'everything else (encoder, norms, FC, copies, decoder)':<50} {'':>5} {'':>30}"
              f" {'':>6} {'':>8} {total - lstm_time:7.3f} {(total - lstm_time) / total:6.1%}\n")
    print("  units M: millions of hidden-unit updates (sequences x steps x H x dirs x calls)")
    print("\none bidirectional LSTM(H/2, H), 512 sequences x 100 steps:")
    print(f"  {'H':>4} {'I+H':>4} {'GMAC/s':>7} {'of peak':>7} {'ns per hidden unit-step':>24}")
    kernel = {}
    for hidden in (16, 32, 64, 128):
        rate, ns = kernel_rate(hidden)
        kernel[hidden] = (rate, ns)
        print(f"  {hidden:>4} {hidden + hidden // 2:>4} {rate / 1e9:7.1f} {rate / peak:7.2f} {ns:24.2f}")
    a, b = MODELS
    (time_a, units_a, macs_a), (time_b, units_b, macs_b) = lstm[a], lstm[b]
    print(f"\nmeasured: {b}'s LSTMs do {macs_b / macs_a:.2f}x the MACs of {a}'s but"
          f" {units_b / units_a:.1f}x the hidden-unit updates, at"
          f" {1e9 * time_b / units_b:.1f} vs {1e9 * time_a / units_a:.1f} ns each"
          f" ({macs_b / units_b:.0f} vs {macs_a / units_a:.0f} MACs each):"
          f" LSTM time {time_b / time_a:.2f}x. Whole model: {rates[b] / rates[a]:.2f}x the MAC rate.")
    print(f"the kernel alone: H=16 runs at {kernel[16][0] / kernel[128][0]:.2f} of H=128's MAC rate;"
          " per unit it is cheaper, per MAC dearer: time follows units more than MACs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

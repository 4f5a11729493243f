"""Real-time factor of every GroupComm-DPRNN-TasNet preset against the DPRNN-TasNet baseline (002).

002 Table 2 gives sizes and MACs; this measures what they cost in wall time on a CPU: the median
time of one forward pass over 4 s of 16 kHz input divided by 4 s (RTF < 1 is faster than real
time), on one thread, eval mode, ``no_grad``, seeded input, after one warm-up pass. The models take
turns so that drifts in machine load hit them alike. Printed per preset: parameters, MACs (thop
convention, 4 s), RTF, and how many times smaller / cheaper / faster than the baseline -- MACs
and wall time need not agree: GroupComm runs many small LSTMs (K groups, short sequences), which a
CPU runs far below its peak.

    python benchmarks/bench_groupcomm_rtf.py
    python benchmarks/bench_groupcomm_rtf.py --presets groupcomm-k16-n128-l6 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from leanse.complexity import count_macs, count_parameters
from leanse.models import build_model
from leanse.models.groupcomm import TABLE2_ROWS

BASELINE = "dprnn-tasnet"
PRESETS = [f"groupcomm-k{k}-n{n}-l{l}" for k, n, l in TABLE2_ROWS]


def median_times(models: dict[str, torch.nn.Module], wav: torch.Tensor, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(wav)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(wav)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    names = [BASELINE, *[p for p in args.presets if p != BASELINE]]
    models = {name: build_model(name).eval() for name in names}
    rate = models[BASELINE].sample_rate
    wav = 0.1 * torch.randn(1, int(args.seconds * rate), generator=torch.Generator().manual_seed(0))
    times = median_times(models, wav, args.repeats)
    params = {name: count_parameters(model) for name, model in models.items()}
    macs = {name: count_macs(model, args.seconds, "paper") for name, model in models.items()}

    base = BASELINE
    print(f"{args.seconds:g} s at {rate} Hz, 1 thread, median of {args.repeats} (after a warm-up)")
    header = (f"{'preset':<24} {'params':>10} {'MACs':>8} {'RTF':>7}   {'smaller':>8} {'fewer MACs':>10} "
              f"{'faster':>7}")
    print(header)
    print("-" * len(header))
    for name in names:
        rtf = times[name] / args.seconds
        print(f"{name:<24} {params[name]:>10,} {macs[name] / 1e9:>7.1f}G {rtf:>7.3f}   "
              f"{params[base] / params[name]:>7.1f}x {macs[base] / macs[name]:>9.1f}x {times[base] / times[name]:>6.2f}x")
    print()
    print("smaller / fewer MACs / faster: the baseline's value over the preset's (002 Table 2 style; >1 is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

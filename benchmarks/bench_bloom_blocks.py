"""Does BLOOM-Net's run time grow linearly with the number of blocks it runs? (paper 003 Sec. 2.3)

``forward(wav, blocks=l)`` runs the encoder, separator blocks 1..l, masker l and decoder l, so its
cost is a fixed part (encoder, bottleneck, one exit) plus l blocks: time should be about
``a + b * l``. This prints, for 1-4 s of input, the median wall time of each profile l = 1..L, the
least-squares line through them and its R^2 (1 = perfectly linear), next to the separator + masker
MACs per l that 003 Table 2 counts. One thread, eval mode, ``no_grad``, seeded input, the profiles
take turns so that drifts in machine load hit them alike.

    python benchmarks/bench_bloom_blocks.py                     # bloom-l6, 1..4 s
    python benchmarks/bench_bloom_blocks.py --preset tiny-bloom --seconds 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from leanse.complexity import trace_cost
from leanse.models import build_model


def profile_times(model: torch.nn.Module, wav: torch.Tensor, repeats: int) -> list[float]:
    """Median seconds of ``model(wav, blocks=l)`` for l = 1..L (interleaved repeats)."""
    depths = range(1, model.num_blocks + 1)
    times: dict[int, list[float]] = {l: [] for l in depths}
    with torch.no_grad():
        for l in depths:  # warm-up
            model(wav, blocks=l)
        for _ in range(repeats):
            for l in depths:
                start = time.perf_counter()
                model(wav, blocks=l)
                times[l].append(time.perf_counter() - start)
    return [statistics.median(times[l]) for l in depths]


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """``(intercept, slope, R^2)`` of the least-squares line ``y = a + b x``."""
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    r2 = 1.0 - float(np.sum(residual**2)) / float(np.sum((y - y.mean()) ** 2))
    return float(intercept), float(slope), r2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bloom-l6", help="a bloom_net preset")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    model = build_model(args.preset).eval()
    depths = np.arange(1, model.num_blocks + 1)
    macs = []
    for l in depths:
        view = model.separator_masker(int(l))
        macs.append(trace_cost(view, view.example_input(1.0), "paper").macs)
    print(f"{args.preset}: {model.num_blocks} blocks at {model.sample_rate} Hz, 1 thread, median of {args.repeats}")
    print("separator+masker MACs per 1 s: " + "  ".join(f"l={l}: {m / 1e9:.2f}G" for l, m in zip(depths, macs)))
    print()
    header = "input  " + "  ".join(f"{f'l={l} (ms)':>10}" for l in depths) + "   intercept      slope     R^2"
    print(header)
    print("-" * len(header))
    worst = 1.0
    for seconds in args.seconds:
        wav = 0.1 * torch.randn(1, int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
        times = np.array(profile_times(model, wav, args.repeats))
        intercept, slope, r2 = linear_fit(depths.astype(float), times)
        worst = min(worst, r2)
        cells = "  ".join(f"{1000 * t:10.1f}" for t in times)
        print(f"{seconds:4.1f} s  {cells}   {1000 * intercept:7.1f} ms  {1000 * slope:6.1f} ms  {r2:.4f}")
    print()
    print(f"about linear in l (every R^2 >= 0.95): {'yes' if worst >= 0.95 else 'NO'} (lowest R^2 {worst:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

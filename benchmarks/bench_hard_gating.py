"""Does hard gating really save the time? (paper 000 eq. 3, 001 Sec. 2.6)

A hard-gated :class:`~leanse.ensemble.SparseEnsemble` runs its gate and then only the arg-max
specialist. If it does, its wall time is that of the gate alone plus that one specialist alone on
the same input; this prints

    ratio = time(hard ensemble) / (time(gate alone) + time(chosen specialist alone))

which should be at most 1.15 (routing, the sharpened softmax and the re-ordering of the batch are
the only extra work), and, for scale, the soft-gated ensemble (every specialist runs, 000 eq. 4)
against the hard one. One thread, eval mode, ``no_grad``, median of interleaved repeats after a
warm-up, seeded random input.

    python benchmarks/bench_hard_gating.py                       # 000: K=4 x LSTM 512x2 + 128x2 gate, 4 s
    python benchmarks/bench_hard_gating.py --preset speaker-ensemble-k10-gru-64x2-8k --seconds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch

from leanse.models import build_model

LIMIT = 1.15


def median_times(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function; the functions take turns so that drifts in machine load
    affect them alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():  # warm-up: allocations, one-off kernel selection
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="snr-ensemble-lstm-512x2", help="a sparse_ensemble model preset")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=1, help="utterances per forward pass")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ensemble = build_model(args.preset).eval()
    if getattr(ensemble, "registered_name", "") != "sparse_ensemble":
        parser.error(f"{args.preset} is not a sparse ensemble preset")
    wav = 0.1 * torch.randn(args.batch, int(args.seconds * ensemble.sample_rate),
                            generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        ensemble.mode = "hard"
        ensemble(wav)
        routing = ensemble.last_routing  # the specialists the gate chooses for this input
        chosen = {k: (routing == k).nonzero(as_tuple=True)[0] for k in torch.unique(routing).tolist()}

        def hard() -> object:
            ensemble.mode = "hard"
            return ensemble(wav)

        def soft() -> object:
            ensemble.mode = "soft"
            return ensemble(wav)

        def parts() -> object:  # what hard gating should cost: the gate, then each chosen specialist
            ensemble.gate(wav)
            return [ensemble.specialists[k](wav.index_select(0, index)) for k, index in chosen.items()]

        times = median_times({"hard": hard, "parts": parts, "soft": soft}, args.repeats)

    ratio = times["hard"] / times["parts"]
    print(f"{args.preset}: K={ensemble.num_experts}, {args.batch} x {args.seconds:g} s at "
          f"{ensemble.sample_rate} Hz, {args.threads} thread(s), median of {args.repeats}")
    print(f"  chosen specialist(s):            {sorted(chosen)}")
    print(f"  gate + chosen specialist(s):     {1000 * times['parts']:8.1f} ms")
    print(f"  hard-gated ensemble:             {1000 * times['hard']:8.1f} ms")
    print(f"  soft-gated ensemble (all K run): {1000 * times['soft']:8.1f} ms")
    print(f"  hard / (gate + specialist) = {ratio:.3f}  (should be <= {LIMIT})")
    print(f"  soft / hard = {times['soft'] / times['hard']:.2f}  (the time hard gating saves)")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())

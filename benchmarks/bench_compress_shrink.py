"""Is a structurally pruned, physically shrunk model really faster? (004 Table III, C2)

Zeros alone do not make dense kernels faster: a structurally pruned model runs at the speed of the
dense one until its dead units are removed (:func:`leanse.compress.shrink.shrink_model`). This
prints, on one thread, the wall time of the dense model and of the shrunk one, their ratio, and next
to it the ratio of their MACs (thop convention), so the two can be compared.

Either give a ``leanse compress --pipeline c2`` output folder (its ``pruned/`` and ``shrunk/``
checkpoints), or let the benchmark build them from presets. A mask RNN (``rnn`` -> ``dense``) gets
a given fraction of its hidden units made unread (their columns zeroed in every tensor that reads
them, as 004's column groups do); any other family (TCNN, GCRN, DPRNN-TasNet, GroupComm, FDNN) is
structurally pruned with 004's groups (Algorithm 2: ``fraction`` of each tensor's kernels /
columns, smallest l1 norm first) -- untrained weights, so which groups go is arbitrary, but what
is removable and the speed of what is left are real. Then shrunk. Eval mode, ``no_grad``, median
of interleaved repeats after a warm-up, seeded input; "dense" is the pruned model before
shrinking (zeros cost as much as any weight in dense kernels).

    python benchmarks/bench_compress_shrink.py                               # lstm-mask-512x2, 50 %
    python benchmarks/bench_compress_shrink.py --preset gru-mask-256x2-8k --fraction 0.75
    python benchmarks/bench_compress_shrink.py --preset tcnn gcrn-small dprnn-tasnet --seconds 1
    python benchmarks/bench_compress_shrink.py --run runs/c-h128-c2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

from leanse.complexity import count_macs, count_parameters


def median_times(models: dict[str, torch.nn.Module], wav: torch.Tensor, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(wav)  # warm-up
        for _ in range(repeats):
            for name, model in models.items():  # interleaved: load drifts hit both alike
                start = time.perf_counter()
                model(wav)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def synthetic(preset: str, fraction: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    from leanse.compress.shrink import shrink_model
    from leanse.models import build_model

    torch.manual_seed(0)
    dense = build_model(preset).eval()
    if not (isinstance(getattr(dense, "rnn", None), torch.nn.RNNBase)
            and isinstance(getattr(dense, "dense", None), torch.nn.Linear)):
        from leanse.compress.pruning import Pruner

        Pruner.from_zeros(dense).prune_groups(fraction)
        shrunk = copy.deepcopy(dense)
        print(f"{preset} shrink: {shrink_model(shrunk)}")
        return dense, shrunk
    rnn = dense.rnn
    units = list(range(0, rnn.hidden_size, max(1, round(1 / fraction))))[: int(fraction * rnn.hidden_size)]
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            getattr(rnn, f"weight_hh_l{layer}")[:, units] = 0
            reader = (getattr(rnn, f"weight_ih_l{layer + 1}") if layer + 1 < rnn.num_layers
                      else dense.dense.weight)
            reader[:, units] = 0
    shrunk = copy.deepcopy(dense)
    info = shrink_model(shrunk)
    print(f"{preset} shrink: {info}")
    return dense, shrunk


def report(label: str, dense: torch.nn.Module, shrunk: torch.nn.Module, seconds: float,
           repeats: int) -> None:
    wav = torch.randn(1, int(seconds * dense.sample_rate), generator=torch.Generator().manual_seed(0))
    times = median_times({"dense": dense, "shrunk": shrunk}, wav, repeats)
    macs = {"dense": count_macs(dense, seconds), "shrunk": count_macs(shrunk, seconds)}
    print(f"== {label} ({seconds:g} s, one thread)")
    for name, model in (("dense", dense), ("shrunk", shrunk)):
        print(f"{name:>7}: {count_parameters(model):>10,} params  {macs[name] / 1e9:7.3f} GMACs  "
              f"{1000 * times[name]:8.1f} ms  RTF {times[name] / seconds:.4f}")
    print(f"time ratio shrunk/dense: {times['shrunk'] / times['dense']:.3f}   "
          f"MAC ratio shrunk/dense: {macs['shrunk'] / macs['dense']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a leanse compress c2 output folder")
    parser.add_argument("--preset", nargs="+", default=["lstm-mask-512x2"])
    parser.add_argument("--fraction", type=float, default=0.5, help="share of units made unread (mask RNNs) or of groups pruned (others)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.run:
        from leanse.checkpoint import load_checkpoint

        if not (args.run / "shrunk").is_dir():
            print(f"{args.run}: no shrunk/ model (nothing was removable)")
            return 1
        pairs = [(str(args.run), load_checkpoint(args.run / "pruned"), load_checkpoint(args.run / "shrunk"))]
    else:
        pairs = [(preset, *synthetic(preset, args.fraction)) for preset in args.preset]
    for label, dense, shrunk in pairs:
        report(label, dense, shrunk, args.seconds, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

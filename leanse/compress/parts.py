"""Every part of a compressed multi-part model, scored before and after (004 on 000 / 003 models).

    python -m leanse.compress.parts UNCOMPRESSED RUN [RUN ...] --data RECIPE --out DIR

004 compresses one network; a sparse ensemble (000) and a BLOOM-Net (003) are several networks in
one checkpoint, and each part must survive on its own:

- a **sparse ensemble**: the hard-gated ensemble (000 eq. 3) on the whole test list, each
  specialist on its own partition (000's oracle), how often the gate picks the oracle specialist
  (gate accuracy), and that hard gating still runs exactly one specialist per utterance (the
  sparse property: forward hooks count the specialists that ran);
- a **BLOOM-Net**: SI-SDRi at every exit ``l = 1..L`` (003 Table 1).

Beside the scores: the parameters that are left (nonzero prunable weights of each part, and all
parameters of the float model that is packed: C2's is physically shrunk), the real bytes of the
packed file and 004's Eq. (11) rate, read from each run's ``compress.json``. Writes
``DIR/parts.json`` and ``DIR/parts.md``; every number is measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["score_parts", "ensemble_routing", "main"]


def _si_sdri(model: torch.nn.Module, mixtures: Sequence[Any], **forward: Any) -> float | None:
    from leanse.evaluate import evaluate_model

    if not mixtures:
        return None
    return float(evaluate_model(model.eval(), mixtures, workers=0, **forward).means["si_sdri"])


def _nonzeros(module: torch.nn.Module) -> int:
    from leanse.compress.pruning import Pruner

    return int(Pruner.from_zeros(module).nonzeros())


@torch.no_grad()
def ensemble_routing(ensemble: torch.nn.Module, mixtures: Sequence[Any]) -> dict[str, Any]:
    """Hard gating on each mixture alone: which specialist the gate picks and how many ran.

    Returns ``{"picked": [k per mixture], "ran": [number of specialists that ran per mixture]}``;
    ``ran`` is counted by forward hooks on the specialists, not read from the routing."""
    ensemble.eval()
    previous, ensemble.mode = ensemble.mode, "hard"
    calls: list[int] = []
    hooks = [s.register_forward_hook(lambda *_: calls.append(1)) for s in ensemble.specialists]
    picked, ran = [], []
    try:
        for mixture in mixtures:
            calls.clear()
            ensemble(torch.from_numpy(mixture.noisy)[None])  # [1, T]
            picked.append(int(ensemble.last_routing[0]))
            ran.append(len(calls))
    finally:
        for hook in hooks:
            hook.remove()
        ensemble.mode = previous
    return {"picked": picked, "ran": ran}


def _ensemble_parts(model: torch.nn.Module, test: Sequence[Any], snrs: Sequence[float]) -> dict[str, Any]:
    """000's view of an SNR-gated ensemble: specialist ``k`` belongs to ``snrs[k]``."""
    from leanse.train.ensembles.partition import Partitioning

    parts = Partitioning("snr", list(snrs))
    truth = [parts.label(m.meta) for m in test]
    routing = ensemble_routing(model, test)
    row: dict[str, Any] = {
        "ensemble (hard)": _si_sdri(model.eval(), test),
        "gate accuracy": sum(p == t for p, t in zip(routing["picked"], truth)) / len(test),
        "specialists run per utterance": sorted(set(routing["ran"])),
        "gate nonzero weights": _nonzeros(model.gate),
    }
    for k, specialist in enumerate(model.specialists):
        own = [m for m, t in zip(test, truth) if t == k]
        row[f"specialist {k} ({snrs[k]:g} dB)"] = _si_sdri(specialist, own)
        row[f"specialist {k} nonzero weights"] = _nonzeros(specialist)
    return row


def _bloom_parts(model: torch.nn.Module, test: Sequence[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {f"exit {l}": _si_sdri(model, test, blocks=l) for l in range(1, model.num_blocks + 1)}
    row["nonzero weights"] = _nonzeros(model)
    return row


def _row(model: torch.nn.Module, test: Sequence[Any], snrs: Sequence[float]) -> dict[str, Any]:
    from leanse.compress.pipeline import _ensemble, _multi_exit

    if _ensemble(model):
        row = _ensemble_parts(model, test, snrs)
    elif _multi_exit(model):
        row = _bloom_parts(model, test)
    else:
        row = {"SI-SDRi": _si_sdri(model, test), "nonzero weights": _nonzeros(model)}
    row["params"] = sum(p.numel() for p in model.parameters())
    return row


def score_parts(uncompressed: Path, runs: Sequence[Path], recipe: Any, pruned: bool = False) -> list[dict[str, Any]]:
    """One row for the uncompressed model and one per compression run, on the recipe's test list;
    ``pruned``: also each run's pruned float model (before quantization), to split the losses."""
    from leanse.checkpoint import load_checkpoint
    from leanse.data.datamodule import build_mixers, fixed_mixtures

    mixers = build_mixers(recipe.data)
    test = fixed_mixtures(mixers.test, mixers.test_specs)
    snrs = list(recipe.data.snrs or [])
    base = load_checkpoint(uncompressed)
    rows = [{"model": "uncompressed", **_row(base, test, snrs),
             "bytes": int(sum(t.numel() * t.element_size() for t in base.state_dict().values()))}]
    for run in runs:
        state = json.loads((Path(run) / "compress.json").read_text())
        sizes = state["sizes"]
        if pruned:
            rows.append({"model": f"{state['options']['pipeline'].upper()} ({Path(run).name}), pruned float",
                         **_row(load_checkpoint(Path(run) / "pruned"), test, snrs)})
        rows.append({
            "model": f"{state['options']['pipeline'].upper()} ({Path(run).name})",
            **_row(load_checkpoint(Path(run) / "packed"), test, snrs),
            "bytes": int(sizes["file_bytes"]), "rate by file": sizes["rate_by_file"],
            "rate Eq. 11": sizes["rate_by_eq11"], "iterations": len(state["history"]),
            "stopped": state["stopped"],
        })
    return rows


def _markdown(rows: list[dict[str, Any]], title: str) -> str:
    from leanse.report import markdown_table

    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> Any:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
        return value if value is not None else "-"

    table = [{c: cell(row.get(c)) for c in columns} for row in rows]
    return f"## {title}\n\n{markdown_table(table)}\n"


def main(argv: list[str] | None = None) -> int:
    from leanse.train.recipe import load_recipe

    parser = argparse.ArgumentParser(prog="python -m leanse.compress.parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("uncompressed", type=Path)
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--data", type=Path, required=True, help="the recipe whose data / test list is used")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="compressed parts")
    parser.add_argument("--pruned", action="store_true", help="also score each run's pruned float model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = score_parts(args.uncompressed, args.runs, load_recipe(args.data), args.pruned)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parts.json").write_text(json.dumps(rows, indent=1, default=float))
    (args.out / "parts.md").write_text(_markdown(rows, args.title))
    print(_markdown(rows, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())

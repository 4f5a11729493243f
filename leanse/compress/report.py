"""The compression report (004 Tables I / III, Figs. 4 / 6): markdown + PNG from measured runs.

    python -m leanse.compress.report UNCOMPRESSED RUN [RUN ...] --data RECIPE --out DIR

``UNCOMPRESSED`` is the trained checkpoint; each ``RUN`` is a ``leanse compress`` output folder.
Every model is scored on the recipe's fixed test list (SI-SDRi, PESQ, STOI per input SNR), sized
by 004's Eq. (11) and by the real bytes of its packed file, counted in dense and nonzero MACs
(:mod:`leanse.compress.cost`), and timed on one thread (the float pruned model, and for C2 the
physically shrunk one). Nothing is copied from the paper: every number is measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["write_compression_report", "main"]

COLUMNS = ["model", "SI-SDRi", "PESQ", "STOI", "MB (Eq. 11)", "file bytes", "rate Eq. 11",
           "rate file", "iterations", "MACs/s dense", "MACs/s nonzero", "RTF float", "RTF shrunk"]


def _scores(model: Any, mixtures: list) -> Any:
    from leanse.evaluate import evaluate_model

    return evaluate_model(model, mixtures, workers=1)


def write_compression_report(uncompressed: Path, runs: list[Path], recipe: Any, out: Path,
                             rtf_seconds: float = 4.0, small: list[Path] = ()) -> Path:
    """``small``: checkpoints of smaller models trained directly (004 Table IV's baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leanse.checkpoint import load_checkpoint
    from leanse.complexity import measure_rtf
    from leanse.compress.cost import sparse_macs
    from leanse.compress.pruning import sparsity_report
    from leanse.data.datamodule import build_mixers, fixed_mixtures
    from leanse.report import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    mixers = build_mixers(recipe.data)
    test = fixed_mixtures(mixers.test, mixers.test_specs)
    base = load_checkpoint(uncompressed)
    base_bytes = sum(t.numel() * t.element_size() for t in base.state_dict().values())
    rows: list[dict[str, Any]] = []
    by_snr: dict[str, dict] = {}
    curves: dict[str, list[float]] = {}
    quality: dict[str, tuple[list[float], list[float]]] = {}  # % left -> validation PESQ
    layers: dict[str, dict[str, float]] = {}

    def cost(model: Any) -> dict:
        macs = sparse_macs(model, 1.0)
        return {"MACs/s dense": macs["dense"], "MACs/s nonzero": macs["nonzero"]}

    result = _scores(base, test)
    means = result.means
    rows.append({"model": "uncompressed", "SI-SDRi": means["si_sdri"], "PESQ": means["pesq"],
                 "STOI": means["stoi"], "MB (Eq. 11)": base_bytes / 2**20, "file bytes": base_bytes,
                 "rate Eq. 11": 1.0, "rate file": 1.0, "iterations": 0, **cost(base),
                 "RTF float": measure_rtf(base, rtf_seconds, repeats=7), "RTF shrunk": None})
    by_snr["uncompressed"] = result.groups().get("snr", {})
    reference = rows[0]
    for folder in small:  # 004 Table IV: a small model trained directly, no compression
        model = load_checkpoint(folder)
        result = _scores(model, test)
        means = result.means
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        nonzero = sum(int((p != 0).sum()) for p in model.parameters())
        rows.append({"model": f"direct small ({folder.parent.name}, {nonzero:,} params)",
                     "SI-SDRi": means["si_sdri"], "PESQ": means["pesq"], "STOI": means["stoi"],
                     "MB (Eq. 11)": size / 2**20, "file bytes": size,
                     "rate Eq. 11": base_bytes / size, "rate file": base_bytes / size,
                     "iterations": 0, **cost(model), "RTF float": measure_rtf(model, rtf_seconds, repeats=7),
                     "RTF shrunk": None})
        by_snr[rows[-1]["model"]] = result.groups().get("snr", {})
    for run in runs:
        state = json.loads((run / "compress.json").read_text())
        name = f"{run.name} ({state['options']['pipeline'].upper()})"
        packed = load_checkpoint(run / "packed")
        pruned = load_checkpoint(run / "pruned")
        result = _scores(packed, test)
        means = result.means
        sizes = state["sizes"]
        shrunk_rtf = None
        if (run / "shrunk").is_dir():
            shrunk_rtf = measure_rtf(load_checkpoint(run / "shrunk"), rtf_seconds, repeats=7)
        accepted = [h for h in state["history"] if h["accepted"]]
        rows.append({"model": name, "SI-SDRi": means["si_sdri"], "PESQ": means["pesq"],
                     "STOI": means["stoi"], "MB (Eq. 11)": sizes["eq11_bytes"] / 2**20,
                     "file bytes": sizes["file_bytes"], "rate Eq. 11": sizes["rate_by_eq11"],
                     "rate file": sizes["rate_by_file"], "iterations": len(accepted),
                     **cost(packed), "RTF float": measure_rtf(pruned, rtf_seconds, repeats=7),
                     "RTF shrunk": shrunk_rtf})
        by_snr[name] = result.groups().get("snr", {})
        curves[name] = [1.0] + [h["fraction_left"] for h in accepted]
        quality[name] = ([100.0] + [100 * h["fraction_left"] for h in state["history"]],
                         [state["base"].get("pesq")] + [h["scores"].get("pesq") for h in state["history"]])
        layers[name] = {k: v["sparsity"] for k, v in sparsity_report(pruned)["tensors"].items()}
    for row in rows[1:]:
        for key in ("SI-SDRi", "PESQ", "STOI"):
            row[f"d{key}"] = None if row[key] is None else row[key] - reference[key]

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for name, curve in curves.items():
        axes[0].plot(range(len(curve)), [100 * c for c in curve], marker="o", label=name)
    axes[0].set_xlabel("pruning iteration")
    axes[0].set_ylabel("% of prunable weights left")
    axes[0].set_title("Fig. 4 style: weights left per iteration")
    axes[0].legend(fontsize=8)
    width = 0.8 / max(len(layers), 1)
    names = list(next(iter(layers.values()), {}).keys())
    for i, (name, ratios) in enumerate(layers.items()):
        axes[1].bar([j + i * width for j in range(len(names))],
                    [100 * ratios.get(n, 0.0) for n in names], width, label=name)
    axes[1].set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    axes[1].set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    axes[1].set_ylabel("% pruned")
    axes[1].set_title("Fig. 6 style: pruning ratio per tensor")
    axes[1].legend(fontsize=8)
    for name, (left, pesq) in quality.items():
        axes[2].plot(left, pesq, marker="o", label=name)
    axes[2].invert_xaxis()
    axes[2].set_xlabel("% of prunable weights left (every iteration, undone ones too)")
    axes[2].set_ylabel("validation PESQ")
    axes[2].set_title("Fig. 7 style: quality against compression")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    figure = out / "compression.png"
    fig.savefig(figure, dpi=110)
    plt.close(fig)

    lines = ["# Compression (004 C1 / C2) -- measured", "",
             f"Test list: {len(test)} mixtures of `{recipe.data.corpus}` "
             f"(recipe `{recipe.name}`). Rates are against the uncompressed float32 model "
             f"({base_bytes:,} bytes). *Eq. 11* is 004's convention (codebooks + indices, no "
             "position information); *file* is the real size of the packed `model.safetensors` "
             "(Rice-coded positions, safetensors header included). MACs per second of audio "
             "(thop convention) of each model as stored -- C2's after its dead units are removed; "
             "nonzero = zero weights skipped, 004 Table III. RTF: median of 7 runs on one thread, "
             f"{rtf_seconds:g} s input; *float* = the pruned model run densely, *shrunk* = C2's "
             "model with dead units removed.", "",
             markdown_table(rows, COLUMNS + ["dSI-SDRi", "dPESQ", "dSTOI"]), "", "## By input SNR", ""]
    snr_rows = []
    for name, groups in by_snr.items():
        for snr, summary in groups.items():
            snr_rows.append({"model": name, "SNR": snr, "SI-SDRi": summary.get("si_sdri"),
                             "PESQ": summary.get("pesq"), "STOI": summary.get("stoi")})
    lines += [markdown_table(snr_rows, ["model", "SNR", "SI-SDRi", "PESQ", "STOI"]), "",
              "## Pruning iterations", ""]
    for run in runs:
        state = json.loads((run / "compress.json").read_text())
        lines.append(f"**{run.name}** (stopped: {state.get('stopped')}; options: "
                     f"`{json.dumps({k: state['options'][k] for k in ('pipeline', 'alpha_prune', 'alpha_quant', 'stoi_drop', 'pesq_drop', 'regularize', 'common_ratio')})}`)")
        lines.append("")
        lines.append(markdown_table([{"iteration": h["iteration"], "removed": h["removed"],
                                      "% left": 100 * h["fraction_left"],
                                      "val STOI": h["scores"].get("stoi"),
                                      "val PESQ": h["scores"].get("pesq"),
                                      "accepted": h["accepted"]} for h in state["history"]],
                                    ["iteration", "removed", "% left", "val STOI", "val PESQ", "accepted"]))
        if state.get("shrink"):
            lines += ["", f"Shrinking: `{json.dumps(state['shrink'])}`"]
        lines += ["", f"Bits per tensor (Algorithm 3): `{json.dumps(state.get('bits'))}`", ""]
    lines += [f"![weights left, pruning ratio per tensor, quality against compression]({figure.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "rows.json").write_text(json.dumps(rows, indent=2, default=float))
    return path


def main(argv: list[str] | None = None) -> int:
    from leanse.train.recipe import load_recipe

    parser = argparse.ArgumentParser(prog="python -m leanse.compress.report",
                                     description="004-style compression report from measured runs")
    parser.add_argument("uncompressed", type=Path, help="the trained checkpoint")
    parser.add_argument("runs", type=Path, nargs="+", help="leanse compress output folders")
    parser.add_argument("--data", type=Path, required=True, help="the recipe (its fixed test list)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--small", type=Path, nargs="*", default=[],
                        help="smaller models trained directly (004 Table IV's baseline)")
    args = parser.parse_args(argv)
    path = write_compression_report(args.uncompressed, args.runs, load_recipe(args.data), args.out,
                                    small=args.small)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

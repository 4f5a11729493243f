"""The comparison's PNG plots (matplotlib): quality against cost with the Pareto front, and per-SNR lines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from leanse.compare.data import bin_low  # noqa: E402

if TYPE_CHECKING:
    from leanse.compare.run import Comparison

TITLES = {"pesq": "PESQ (wideband)", "dnsmos_ovrl": "DNSMOS OVRL", "si_sdri": "SI-SDRi (dB)"}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: none has lower-or-equal cost *and* higher-or-
    equal quality with one of the two strictly better. Sorted by cost."""
    front = []
    for i, (cost, quality) in enumerate(points):
        dominated = any(
            c <= cost and q >= quality and (c < cost or q > quality)
            for j, (c, q) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def quality_vs_cost(rows: list[dict[str, Any]], cost_key: str, metric: str, xlabel: str, path: Path,
                    noisy_quality: float | None) -> Path | None:
    """One point per system that has both figures; log x; the Pareto front joined and filled."""
    shown = [r for r in rows if r.get(cost_key) and r.get(metric) is not None]
    if not shown:
        return None
    points = [(float(r[cost_key]), float(r[metric])) for r in shown]
    front = set(pareto_front(points))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for index, (row, (x, y)) in enumerate(zip(shown, points)):
        on_front = index in front
        ax.plot(x, y, "o", ms=8, color="C0" if row.get("kind") != "peer" else "C1",
                mfc=None if on_front else "white", mew=1.5)
        # labels alternate above / below their point, so neighbours at one cost stay readable
        ax.annotate(row["system"], (x, y), textcoords="offset points", xytext=(6, 4 if index % 2 == 0 else -11),
                    fontsize=8)
    front_points = [points[i] for i in sorted(front, key=lambda i: points[i][0])]
    ax.step([p[0] for p in front_points], [p[1] for p in front_points], where="post", color="C2", lw=1.2,
            label="Pareto front (filled points)")
    if noisy_quality is not None:
        ax.axhline(noisy_quality, color="grey", ls="--", lw=1, label="noisy input")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(TITLES.get(metric, metric))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)  # below the axes
    ax.set_title("blue: leanse models, orange: peers", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_snr_lines(rows: list[dict[str, Any]], metrics: list[str], path: Path) -> Path | None:
    """Each metric against the SNR bin, one line per system (the noisy input dashed)."""
    if not rows:
        return None
    bins = sorted({r["snr_bin"] for r in rows}, key=bin_low)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for system in systems:
            by_bin = {r["snr_bin"]: r.get(metric) for r in rows if r["system"] == system}
            ys = [by_bin.get(b) for b in bins]
            ax.plot(range(len(bins)), [float("nan") if y is None else y for y in ys], marker="o", label=system,
                    ls="--" if system == "noisy input" else "-")
        ax.set_xticks(range(len(bins)), bins)
        ax.set_xlabel("input SNR (dB)")
        ax.set_ylabel(TITLES.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(comparison: "Comparison") -> dict[str, Path]:
    """The PNGs of a comparison into its folder: ``{file name: path}`` of those drawn."""
    out = comparison.out
    metric = comparison.primary_metric
    overall = comparison.overall_rows()
    noisy = overall[0].get(metric) if overall else None
    systems = overall[1:]
    written: dict[str, Path | None] = {
        "quality_vs_macs.png": quality_vs_cost(systems, "macs_per_second_paper", metric,
                                               "MACs per second of audio (thop convention, log)",
                                               out / "quality_vs_macs.png", noisy),
        "quality_vs_rtf.png": quality_vs_cost(systems, "rtf", metric, "real-time factor at 1 thread (log)",
                                              out / "quality_vs_rtf.png", noisy),
        "per_snr.png": per_snr_lines(comparison.group_rows("snr_bin"),
                                     [metric, "si_sdri"] if metric == "pesq" else [metric], out / "per_snr.png"),
    }
    return {name: path for name, path in written.items() if path is not None}

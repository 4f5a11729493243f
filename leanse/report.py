"""Tables and figures for a run: one markdown report, PNG figures beside it.

Every table says how many files it averages and the SI-SDR convention; results on the demo
corpus carry a note that its speech is synthetic.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DEMO_NOTE = (
    "Results on the embedded demo corpus: synthetic (espeak-ng) speech and procedural noise. "
    "Good for checking that a method works and for relative comparisons; not a measure of "
    "real-world quality."
)


def save_figure(fig: Any, path: Path, ax: Any = None, title: str = "") -> Path:
    """Every report figure ends here: the optional title on ``ax``, a tight layout, a 110-dpi PNG."""
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_head(title: str, corpus: str) -> list[str]:
    """The first lines of every run's ``report.md``: the title, and the demo-corpus note on demo data."""
    return [f"# {title}", ""] + ([f"> {DEMO_NOTE}", ""] if corpus == "demo" else [])


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts -> a GitHub markdown table; floats get 2-3 significant decimals."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """The same table aligned for a terminal."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[str(c) for c in columns]] + [[_format(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if abs(value) >= 1e9:
            return f"{value / 1e9:.2f}G"
        if abs(value) >= 1e6:
            return f"{value / 1e6:.2f}M"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def spectrogram_figure(signals: dict[str, np.ndarray], sample_rate: int, path: Path) -> Path:
    """Stacked log-power spectrograms (e.g. noisy / enhanced / clean) on one colour scale."""
    from scipy.signal import spectrogram

    fig, axes = plt.subplots(len(signals), 1, figsize=(8, 2.2 * len(signals)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (title, wav) in zip(axes, signals.items()):
        freqs, times, power = spectrogram(wav, fs=sample_rate, nperseg=512, noverlap=384)
        # A floor keeps digital silence (exact zeros) at the bottom of the scale instead of -inf.
        level = 10 * np.log10(power + 1e-14)
        ax.pcolormesh(times, freqs, level, cmap="magma", vmin=-130, vmax=-30, shading="auto")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("seconds")
    return save_figure(fig, path)


def training_curve_figure(metrics_csv: Path, path: Path) -> Path | None:
    """Training and validation loss against step, from Lightning's CSV log."""
    if not metrics_csv.is_file():
        return None
    train, valid = [], []
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row.get("train_loss_step"):
                train.append((int(row["step"]), float(row["train_loss_step"])))
            if row.get("val_loss"):
                valid.append((int(row["step"]), float(row["val_loss"])))
    if not train and not valid:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    if train:
        ax.plot(*zip(*train), label="train (batch)", alpha=0.6)
    if valid:
        ax.plot(*zip(*valid), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative SI-SDR, dB)")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)

"""Numbers and figures of a sparse-ensemble run: per-class gate accuracy, SI-SDRi broken down by
input SNR (or gender, or speaker group), the size sweep of 000 Fig. 2 / 001 Fig. 3 and the t-SNE
of per-speaker mean embeddings of 001 Fig. 2.

Everything here works on plain per-file rows (``leanse.evaluate`` rows: ``si_sdri`` and the
mixture's labels ``snr``, ``gender``, ``group``...), so it is independent of how the models ran.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from leanse.errors import LeanseError  # noqa: E402
from leanse.report import save_figure  # noqa: E402

MARKERS = {"M": "o", "F": "^"}


# -- tables -----------------------------------------------------------------------------------


def snr_label(snr: float, snrs: Sequence[float] | None) -> str:
    """The SNR column a mixture falls in: its value for discrete SNRs (000), else a 5-dB bin
    ``[low, low+5)`` (001 draws SNRs uniformly from [-5, 10])."""
    if snrs:
        nearest = min(snrs, key=lambda s: abs(s - snr))
        return f"{nearest:g} dB"
    low = 5 * math.floor(snr / 5)
    return f"[{low:g}, {low + 5:g}) dB"


def mean_of(rows: Sequence[Mapping[str, Any]], metric: str = "si_sdri") -> float | None:
    """Mean of ``metric`` over rows where it was scored; ``None`` for no rows."""
    values = [row[metric] for row in rows if row.get(metric) is not None]
    return float(np.mean(values)) if values else None


def means_by(
    rows: Sequence[Mapping[str, Any]], key: Any, metric: str = "si_sdri"
) -> dict[str, float | None]:
    """``{label: mean metric}``; ``key`` is a row field or a function ``row -> label``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        label = key(row) if callable(key) else str(row.get(key))
        groups.setdefault(label, []).append(row)
    return {label: mean_of(group, metric) for label, group in groups.items()}


def gate_accuracy(predictions: Sequence[int], labels: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """Overall and per-class accuracy of a gate, its confusion matrix and chance levels.

    ``chance`` is ``1/K`` (a uniform guess); ``majority`` the accuracy of always answering the most
    frequent class of this test set, the stricter baseline when classes are unbalanced.
    """
    if len(predictions) != len(labels):
        raise LeanseError(f"{len(predictions)} predictions for {len(labels)} labels")
    k = len(names)
    confusion = np.zeros((k, k), dtype=int)
    for truth, guess in zip(labels, predictions):
        confusion[truth, guess] += 1
    support = confusion.sum(axis=1)
    total = int(support.sum())
    return {
        "overall": float(np.trace(confusion) / total) if total else None,
        "per_class": {
            names[i]: {"n": int(support[i]), "accuracy": float(confusion[i, i] / support[i]) if support[i] else None}
            for i in range(k)
        },
        "chance": 1.0 / k,
        "majority": float(support.max() / total) if total else None,
        "confusion": confusion.tolist(),
        "n": total,
    }


# -- figures ----------------------------------------------------------------------------------


def si_sdri_figure(table: Mapping[str, Mapping[str, float | None]], columns: Sequence[str], path: Path,
                   title: str = "") -> Path:
    """Grouped bars: one group per column (``all``, each SNR ...), one bar per model."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(columns) + 2), 3.6))
    width = 0.8 / max(len(table), 1)
    x = np.arange(len(columns))
    for i, (model, values) in enumerate(table.items()):
        heights = [values.get(c) for c in columns]
        ax.bar(x + (i - (len(table) - 1) / 2) * width,
               [np.nan if h is None else h for h in heights], width, label=model)
    ax.set_xticks(x, columns)
    ax.set_ylabel("SI-SDRi (dB)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(table), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return save_figure(fig, path, ax, title)


def gate_accuracy_figure(accuracies: Mapping[str, Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """Per-class accuracy bars for each gate (naive / fine-tuned), with the chance level."""
    gates = list(accuracies)
    names = list(next(iter(accuracies.values()))["per_class"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 3.2))
    width = 0.8 / max(len(gates), 1)
    x = np.arange(len(names))
    for i, gate in enumerate(gates):
        per_class = accuracies[gate]["per_class"]
        values = [per_class[n]["accuracy"] for n in names]
        ax.bar(x + (i - (len(gates) - 1) / 2) * width, [np.nan if v is None else 100 * v for v in values],
               width, label=f"{gate} ({100 * (accuracies[gate]['overall'] or 0):.0f} % overall)")
    ax.axhline(100 * accuracies[gates[0]]["chance"], color="grey", linestyle="--", label="chance (1/K)")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("gate accuracy (%)")
    ax.legend(fontsize=7)
    return save_figure(fig, path, ax, title)


def size_sweep_figure(curves: Mapping[str, Sequence[tuple[float, float | None, str]]], path: Path,
                      title: str = "") -> Path:
    """SI-SDRi against run-time parameters, one line per model kind (000 Fig. 2c, 001 Fig. 3).

    ``curves``: ``{name: [(effective params, SI-SDRi, size label), ...]}``. The x axis is what runs
    per utterance (gate + one specialist for an ensemble), so a point left of another is cheaper.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        points = sorted((x, y, label) for x, y, label in points if y is not None)
        if not points:
            continue
        xs, ys, labels = zip(*points)
        ax.plot(xs, ys, "o-" if "generalist" in name else "s--", label=name)
        if "generalist" in name:
            for x, y, label in points:
                ax.annotate(label, (x, y), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters run per utterance (gate + one specialist for ensembles)")
    ax.set_ylabel("SI-SDRi (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path, ax, title)


def tsne_points(means: np.ndarray, perplexity: float = 40.0, seed: int = 0) -> tuple[np.ndarray, float]:
    """2-D t-SNE of per-speaker mean embeddings (001 Fig. 2 uses perplexity 40 on 211 speakers).

    t-SNE needs ``perplexity < number of points``; with fewer speakers (demo corpus, tests) it is
    lowered to ``max(2, n / 5)`` -- 001's ratio of 40 to 211 speakers -- and the value used is
    returned so the figure can say so.
    """
    from sklearn.manifold import TSNE

    n = len(means)
    if n < 3:
        raise LeanseError(f"t-SNE needs at least 3 speakers, got {n}")
    used = float(perplexity) if perplexity < n else max(2.0, n / 5)
    used = min(used, n - 1.0)
    points = TSNE(n_components=2, perplexity=used, random_state=seed, init="pca").fit_transform(
        np.asarray(means, dtype=np.float64)
    )
    return points, used


def tsne_figure(panels: Sequence[Mapping[str, Any]], genders: Sequence[str | None], path: Path) -> Path:
    """001 Fig. 2: one panel per embedding space, points coloured by group, marker by gender.

    Each panel: ``{"title", "points" [S, 2], "groups" [S]}``; ``genders`` is the same for all.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("tab10")
    for ax, panel in zip(axes, panels):
        points, groups = np.asarray(panel["points"]), list(panel["groups"])
        for sex, marker in list(MARKERS.items()) + [(None, "x")]:
            for group in sorted(set(groups)):
                mask = [g == group and s == sex for g, s in zip(groups, genders)]
                if any(mask):
                    ax.scatter(points[mask, 0], points[mask, 1], c=[cmap(group % 10)], marker=marker, s=28,
                               label=f"group {group}, {sex or '?'}")
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=6, loc="best")
    return save_figure(fig, path)

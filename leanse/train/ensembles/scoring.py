"""Scoring every model of one specialist size on the one test list, and the claims they test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanse.checkpoint import load_checkpoint
from leanse.complexity import profile_model, reduction
from leanse.data.datamodule import GENDER_CLASSES
from leanse.data.records import Mixture
from leanse.ensemble.report import gate_accuracy, mean_of, snr_label
from leanse.evaluate import evaluate_model
from leanse.train.classify import predict_classes
from leanse.train.ensembles.partition import Partitioning
from leanse.train.ensembles.steps import SizeStages


@dataclass
class SizeScores:
    label: str
    rows: dict[str, list[dict[str, Any]]]  # model name -> per-file rows
    specialist_names: list[str]
    gates: dict[str, dict[str, Any]]  # naive / fine-tuned -> gate_accuracy()
    costs: dict[str, dict[str, Any]]
    reductions: dict[str, float]
    generalist_on_partition: dict[str, float | None]


def score_size(parts: Partitioning, stages: SizeStages, test: list[Mixture],
               generalist_rows: list[dict[str, Any]], out: Path, workers: int) -> SizeScores:
    """SI-SDRi of every model of one size on the one test list, gate accuracy and cost."""
    labels = {m.id: parts.label(m.meta) for m in test}
    rows: dict[str, list[dict[str, Any]]] = {"generalist": generalist_rows}
    names = []
    for k, path in enumerate(stages.specialists):
        subset = [m for m in test if labels[m.id] == k]
        name = f"specialist {parts.names[k]}"
        names.append(name)
        rows[name] = evaluate_model(load_checkpoint(path), subset, out / f"specialist-{k}", workers).rows if subset else []
    # The oracle sends each utterance to the specialist of its true partition (000 Sec. 4): exactly
    # the specialists' rows on their own partitions (SparseEnsemble(mode="oracle") gives the same
    # outputs; tests/test_ensemble_recipes.py checks it).
    rows["oracle"] = [row for name in names for row in rows[name]]
    ensembles = {}
    for name, path in (("naive ensemble", stages.naive), ("fine-tuned ensemble", stages.finetuned)):
        ensemble = load_checkpoint(path)
        ensemble.mode = "hard"  # test time: only the arg-max specialist runs (000 eq. 3)
        ensembles[name] = ensemble
        rows[name] = evaluate_model(ensemble, test, out / name.split()[0], workers).rows
    truth = [labels[m.id] for m in test]
    gates = {name.replace(" ensemble", " gate"): gate_accuracy(predict_classes(e.gate, test), truth, parts.names)
             for name, e in ensembles.items()}
    generalist = load_checkpoint(stages.generalist)
    costs = {
        "generalist": profile_model(generalist, 1.0, rtf=False),
        "one specialist": profile_model(load_checkpoint(stages.specialists[0]), 1.0, rtf=False),
        "ensemble (hard)": profile_model(ensembles["fine-tuned ensemble"], 1.0, rtf=False),
    }
    generalist_on = {}
    for k, name in enumerate(names):
        ids = {m.id for m in test if labels[m.id] == k}
        generalist_on[name] = mean_of([r for r in generalist_rows if r["id"] in ids])
    return SizeScores(stages.label, rows, names, gates, costs,
                      reduction(costs["ensemble (hard)"], costs["generalist"]), generalist_on)


def si_sdri_columns(rows: list[dict[str, Any]], snrs: list[float] | None, extra: str | None) -> dict[str, float | None]:
    """``all``, one column per input SNR (or 5-dB SNR bin) and, for gender runs, per sex."""
    out: dict[str, float | None] = {"all": mean_of(rows)}
    for label in snr_columns(snrs):
        out[label] = mean_of([r for r in rows if snr_label(float(r["snr"]), snrs) == label])
    if extra == "gender":
        for sex in GENDER_CLASSES:
            out[sex] = mean_of([r for r in rows if r.get("gender") == sex])
    return out


def snr_columns(snrs: list[float] | None) -> list[str]:
    return [f"{s:g} dB" for s in snrs] if snrs else [snr_label(x, None) for x in (-5.0, 0.0, 5.0)]


def summary_rows(scores: SizeScores, parts: Partitioning) -> list[dict[str, Any]]:
    """The terminal table of ``leanse run``: the headline size's models, cost and SI-SDRi."""
    ens = scores.costs["ensemble (hard)"]
    gen = scores.costs["generalist"]
    one = scores.costs["one specialist"]
    rows = [
        {"model": f"generalist {scores.label}", "params": gen["params"], "run-time params": gen["effective_params"],
         "SI-SDRi": mean_of(scores.rows["generalist"])},
        {"model": f"oracle (K={parts.k})", "params": ens["params"], "run-time params": one["params"],
         "SI-SDRi": mean_of(scores.rows["oracle"])},
    ]
    for name in ("naive ensemble", "fine-tuned ensemble"):
        rows.append({"model": f"{name} (K={parts.k})", "params": ens["params"],
                     "run-time params": ens["effective_params"], "SI-SDRi": mean_of(scores.rows[name])})
    return rows


def claims(scores: SizeScores, parts: Partitioning) -> list[str]:
    """The issue's three claims, with the measured numbers and whether each held."""
    lines = []
    wins = []
    for name in scores.specialist_names:
        spec, gen = mean_of(scores.rows[name]), scores.generalist_on_partition[name]
        if spec is not None and gen is not None:
            wins.append((name, spec, gen))
    held = sum(spec > gen for _, spec, gen in wins)
    detail = "; ".join(f"{n}: {s:.2f} vs {g:.2f} dB" for n, s, g in wins)
    lines.append(
        f"- **A specialist beats the same-size generalist on its own partition**: "
        f"{'HELD' if wins and held == len(wins) else 'NOT HELD'}: the specialist won on {held} of "
        f"{len(wins)} partitions (specialist vs generalist SI-SDRi on the same test mixtures: {detail})."
    )
    naive, tuned = mean_of(scores.rows["naive ensemble"]), mean_of(scores.rows["fine-tuned ensemble"])
    if naive is not None and tuned is not None:
        lines.append(
            f"- **The fine-tuned ensemble is at least as good as the naive one**: "
            f"{'HELD' if tuned >= naive else 'NOT HELD'} ({tuned:.2f} vs {naive:.2f} dB SI-SDRi, "
            f"both hard-gated)."
        )
    gate = scores.gates["naive gate"]
    bar = (1 + gate["chance"]) / 2
    lines.append(
        f"- **The gate's accuracy is far above chance**: {'HELD' if (gate['overall'] or 0) >= bar else 'NOT HELD'} "
        f"({100 * (gate['overall'] or 0):.1f} % on {gate['n']} test mixtures; chance 1/K = "
        f"{100 * gate['chance']:.1f} %, majority class {100 * (gate['majority'] or 0):.1f} %; 'far above' "
        f"taken as at least halfway from chance to perfect, {100 * bar:.1f} %). After fine-tuning: "
        f"{100 * (scores.gates['fine-tuned gate']['overall'] or 0):.1f} %."
    )
    return lines

"""``report.md`` of the ensemble recipes, with its figures (plots live in :mod:`leanse.ensemble.report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanse.audio import save_audio
from leanse.checkpoint import load_checkpoint
from leanse.data.datamodule import GENDER_CLASSES, Mixers, fixed_mixtures
from leanse.enhance import enhance_waveform
from leanse.ensemble.report import (
    gate_accuracy_figure,
    mean_of,
    si_sdri_figure,
    size_sweep_figure,
    tsne_figure,
    tsne_points,
)
from leanse.report import markdown_table, report_head, spectrogram_figure
from leanse.train.ensembles.partition import Partitioning
from leanse.train.ensembles.scoring import SizeScores, claims, si_sdri_columns, snr_columns
from leanse.train.ensembles.steps import Trained, speaker_means_table, write_json
from leanse.train.recipe import Recipe
from leanse.train.stages import recipe_stages


def write_report(recipe: Recipe, trained: Trained, sections: dict[str, list[SizeScores]],
                 example: dict[str, Any], tsne: Path | None, seconds: float) -> Path:
    """``report.md`` with its PNG figures, in the run folder."""
    run_dir = recipe.run_dir
    data = recipe.data
    extra = "gender" if recipe.kind == "smole_gender" else None
    columns = ["all", *snr_columns(data.snrs)] + (list(GENDER_CLASSES) if extra else [])
    n_test = len(trained.mixers.test_specs)
    lines = report_head(f"{recipe.name} ({recipe.kind})", data.corpus)
    lines += [
        f"Every model is scored on the same fixed test list ({n_test} mixtures of unseen speakers and noises, "
        f"`test_list.csv`), {data.sample_rate} Hz. SI-SDR is zero-mean (Le Roux et al. 2019); SI-SDRi is "
        f"against the noisy input of the same file. Ensembles are tested with hard gating (000 eq. 3): "
        f"the gate and one specialist per utterance. A specialist is scored on its own partition only; "
        f"the oracle is each utterance denoised by the specialist of its true partition. Cost: "
        f"`leanse.complexity`, paper (thop) convention, per second of audio; run-time parameters and "
        f"MACs are measured by running the model.",
        "",
    ]
    sweep_curves: dict[str, list[tuple[float, float | None, str]]] = {}
    for key, scores_by_size in sections.items():
        parts, _, _ = trained.runs[key]
        title = f"K={parts.k}" + (f" speaker groups ({key})" if key else "")
        lines += [f"## {title}", ""]
        for i, scores in enumerate(scores_by_size):
            prefix = f"{key}-{scores.label}" if key else scores.label
            lines += [f"### Specialist size {scores.label}" + (" (headline)" if i == 0 else ""), ""]
            if i == 0:
                lines += ["Claims, measured on this run:", "", *claims(scores, parts), ""]
            lines += _size_section(scores, parts, data.snrs, extra, columns, run_dir, prefix)
            gen, ens, one = (scores.costs[n] for n in ("generalist", "ensemble (hard)", "one specialist"))
            sweep_curves.setdefault("generalist", []).append(
                (gen["effective_params"], mean_of(scores.rows["generalist"]), scores.label))
            suffix = f" {key}" if key else ""
            sweep_curves.setdefault(f"oracle{suffix}", []).append(
                (one["params"], mean_of(scores.rows["oracle"]), scores.label))  # no gate runs
            sweep_curves.setdefault(f"naive ensemble{suffix}", []).append(
                (ens["effective_params"], mean_of(scores.rows["naive ensemble"]), scores.label))
            sweep_curves.setdefault(f"fine-tuned ensemble{suffix}", []).append(
                (ens["effective_params"], mean_of(scores.rows["fine-tuned ensemble"]), scores.label))
    if len(next(iter(sections.values()))) > 1:
        figure = size_sweep_figure(_dedupe(sweep_curves), run_dir / "size_sweep.png",
                                   f"{recipe.name}: SI-SDRi against run-time size (000 Fig. 2 / 001 Fig. 3)")
        lines += ["## Size sweep", "", f"![size sweep]({figure.name})", ""]
    if tsne is not None:
        lines += [
            "## Speaker embeddings (001 Fig. 2)", "",
            "t-SNE of each training speaker's mean embedding; marker = sex (o male, ^ female). Left: the "
            "Siamese embedding f, coloured by k-means group. Middle: f after fine-tuning the headline "
            "ensemble, same k-means colours. Right: the same points coloured by the fine-tuned classifier "
            "g's choice (001 Fig. 2c-d).", "", f"![t-SNE]({tsne.name})", "",
        ]
    lines += [
        "## Example", "",
        f"Test mixture `{example['id']}` enhanced by the fine-tuned ensemble (hard gating); wavs in `examples/`.",
        "", f"![noisy / enhanced / clean]({example['figure'].name})", "",
        f"Wall time of the whole run (training skipped for finished stages): {seconds / 60:.1f} min.",
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _size_section(scores: SizeScores, parts: Partitioning, snrs: list[float] | None, extra: str | None,
                  columns: list[str], run_dir: Path, prefix: str) -> list[str]:
    """Tables and figures of one size: SI-SDRi, specialist vs generalist, gate accuracy, cost."""
    table = {name: si_sdri_columns(rows, snrs, extra) for name, rows in scores.rows.items()}
    si_rows = [{"model": name, "files": len(scores.rows[name]), **{c: table[name].get(c) for c in columns}}
               for name in scores.rows]
    shown = {n: v for n, v in table.items() if not n.startswith("specialist")}
    figure = si_sdri_figure(shown, columns, run_dir / f"si_sdri_{prefix}.png", f"SI-SDRi, size {scores.label}")
    versus = [{"partition": name.removeprefix("specialist "), "files": len(scores.rows[name]),
               "specialist": mean_of(scores.rows[name]), "generalist": scores.generalist_on_partition[name],
               "difference": _diff(mean_of(scores.rows[name]), scores.generalist_on_partition[name])}
              for name in scores.specialist_names]
    gate_rows = []
    for cls in parts.names:
        naive, tuned = (scores.gates[g]["per_class"][cls] for g in ("naive gate", "fine-tuned gate"))
        gate_rows.append({"class": cls, "files": naive["n"], "naive gate": _pct(naive["accuracy"]),
                          "fine-tuned gate": _pct(tuned["accuracy"])})
    gate_rows.append({"class": "all", "files": scores.gates["naive gate"]["n"],
                      "naive gate": _pct(scores.gates["naive gate"]["overall"]),
                      "fine-tuned gate": _pct(scores.gates["fine-tuned gate"]["overall"])})
    gate_figure = gate_accuracy_figure(scores.gates, run_dir / f"gate_accuracy_{prefix}.png",
                                       f"gate accuracy per class, size {scores.label}")
    other = [{"model": name, **{m: mean_of(rows, m) for m in ("pesq", "stoi", "estoi")}}
             for name, rows in scores.rows.items() if not name.startswith("specialist")]
    noisy = next(iter(scores.rows.values()))
    other.insert(0, {"model": "noisy input", **{m: mean_of(noisy, f"{m}_noisy") for m in ("pesq", "stoi", "estoi")}})
    cost_rows = [{"model": name, "params": c["params"], "run-time params": c["effective_params"],
                  "MACs/s": float(c["macs_per_second"])} for name, c in scores.costs.items()]
    red = scores.reductions
    return [
        "SI-SDRi (dB) by input SNR" + (" and speaker sex" if extra else "") + ":", "",
        markdown_table(si_rows, ["model", "files", *columns]), "",
        f"![SI-SDRi]({figure.name})", "",
        "Each specialist against the same-size generalist on that partition's test mixtures (SI-SDRi, dB):", "",
        markdown_table(versus), "",
        f"Gate accuracy per class (chance {100 / parts.k:.1f} %):", "",
        markdown_table(gate_rows), "",
        f"![gate accuracy]({gate_figure.name})", "",
        "PESQ / STOI / ESTOI means (PESQ failures left out, never counted as 0):", "",
        markdown_table(other), "",
        "Cost (paper convention, 1 s of audio):", "",
        markdown_table(cost_rows), "",
        f"Against the same-size generalist, the hard-gated ensemble has {_fewer(red.get('params'))} parameters "
        f"in total and runs {_fewer(red.get('effective_params'))} parameters and {_fewer(red.get('effective_macs'))} "
        f"MACs per utterance (`leanse.complexity.reduction`; the size sweep compares it with larger generalists).", "",
    ]


def write_tsne(recipe: Recipe, trained: Trained, run_dir: Path) -> Path:
    """001 Fig. 2: mean embeddings before (f) and after fine-tuning (f of the headline ensemble)."""
    stages = recipe_stages(recipe)
    key = next(iter(trained.runs))
    parts, _, sizes = trained.runs[key]
    clusters = json.loads(parts.groups.with_name("clusters.json").read_text())
    train = sorted(s for s, v in trained.speakers.items() if v["split"] == "train")
    genders = [trained.speakers[s]["gender"] for s in train]
    before = np.array([trained.speakers[s]["mean"] for s in train])
    kmeans = [clusters[s]["group"] for s in train]
    tuned = load_checkpoint(sizes[0].finetuned)
    after_table = speaker_means_table(tuned.gate.embedding, {"train": trained.corpus.train}, recipe.data)
    after = np.array([after_table[s]["mean"] for s in train])
    with torch.no_grad():
        chosen = tuned.gate.classifier(torch.tensor(after, dtype=torch.float32)).argmax(-1).tolist()
    seed = recipe.train.seed
    (p_before, perplexity), (p_after, _) = (tsne_points(x, stages.tsne_perplexity, seed) for x in (before, after))
    agree = np.mean([a == b for a, b in zip(kmeans, chosen)])
    panels = [
        {"title": f"f (Siamese), k-means groups, K={parts.k}", "points": p_before, "groups": kmeans},
        {"title": f"f after fine-tuning ({sizes[0].label}), k-means groups", "points": p_after, "groups": kmeans},
        {"title": f"after fine-tuning, g's choice ({100 * agree:.0f} % = k-means)", "points": p_after,
         "groups": chosen},
    ]
    path = tsne_figure(panels, genders, run_dir / "tsne.png")
    write_json(run_dir / "tsne.json", {"perplexity": perplexity, "speakers": train, "kmeans": kmeans,
                                        "finetuned_classifier": chosen, "agreement": float(agree)})
    return path


def write_example(run_dir: Path, model_dir: Path, mixers: Mixers, rate: int) -> dict[str, Any]:
    model = load_checkpoint(model_dir)
    model.mode = "hard"
    example = fixed_mixtures(mixers.test, mixers.test_specs[:1])[0]
    enhanced = enhance_waveform(model, example.noisy, rate)
    paths = {label: save_audio(run_dir / "examples" / f"{example.id}_{label}.wav", wav, rate)
             for label, wav in (("noisy", example.noisy), ("enhanced", enhanced), ("clean", example.clean))}
    figure = spectrogram_figure(
        {f"noisy ({float(example.meta['snr']):.0f} dB SNR)": example.noisy, "enhanced (fine-tuned ensemble)": enhanced,
         "clean": example.clean}, rate, run_dir / "spectrograms.png")
    return {"id": example.id, "enhanced": paths["enhanced"], "figure": figure}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _fewer(fraction: float | None) -> str:
    if fraction is None:
        return "(not measured)"
    return f"{100 * fraction:.1f} % fewer" if fraction >= 0 else f"{-100 * fraction:.1f} % more"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _dedupe(curves: dict[str, list]) -> dict[str, list]:
    return {name: sorted(set(points)) for name, points in curves.items()}

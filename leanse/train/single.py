"""The single-model recipe, top to bottom: data -> train -> score -> profile -> enhance -> report.

This is the main job of the README: on the demo corpus with the ``tiny`` mask-RNN recipe it runs in
minutes on two CPU cores and prints one table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanse.audio import save_audio
from leanse.checkpoint import load_checkpoint
from leanse.complexity import profile_model
from leanse.data.datamodule import build_mixers, fixed_mixtures
from leanse.data.mixing import write_specs
from leanse.enhance import enhance_waveform
from leanse.evaluate import evaluate_model
from leanse.report import markdown_table, report_head, spectrogram_figure, text_table, training_curve_figure
from leanse.train.recipe import Recipe, save_recipe, train_model

SUMMARY_COLUMNS = ["model", "params", "MACs/s", "RTF", "SI-SDRi", "PESQ", "STOI", "ESTOI"]


@dataclass
class RunResult:
    run_dir: Path
    report: Path
    enhanced: Path
    table: str
    rows: list[dict[str, Any]]


def run_single(recipe: Recipe) -> RunResult:
    """Train the recipe's model, score it against the noisy input, write the report."""
    started = time.time()
    run_dir = recipe.run_dir
    save_recipe(recipe, run_dir / "recipe.yaml")

    mixers = build_mixers(recipe.data)
    write_specs(run_dir / "test_list.csv", mixers.test_specs)
    best = train_model(recipe, mixers, run_dir)
    model = load_checkpoint(best)

    test_set = fixed_mixtures(mixers.test, mixers.test_specs)
    result = evaluate_model(model, test_set, out_dir=run_dir / "evaluation", workers=recipe.evaluate.workers)
    profile = profile_model(model, seconds=1.0, convention="paper")
    profile["model"] = recipe.model.get("preset", profile["model"])
    means = result.means
    rows = [
        {"model": "noisy input", "params": None, "MACs/s": None, "RTF": None, "SI-SDRi": 0.0,
         "PESQ": means.get("pesq_noisy"), "STOI": means.get("stoi_noisy"), "ESTOI": means.get("estoi_noisy")},
        {"model": profile["model"], "params": profile["params"],
         "MACs/s": float(profile["macs_per_second"]), "RTF": profile["rtf"], "SI-SDRi": means.get("si_sdri"),
         "PESQ": means.get("pesq"), "STOI": means.get("stoi"), "ESTOI": means.get("estoi")},
    ]

    example = test_set[0]
    enhanced = enhance_waveform(model, example.noisy, example.sample_rate)
    examples_dir = run_dir / "examples"
    paths = {}
    for label, wav in (("noisy", example.noisy), ("enhanced", enhanced), ("clean", example.clean)):
        paths[label] = save_audio(examples_dir / f"{example.id}_{label}.wav", wav, example.sample_rate)
    figure = spectrogram_figure(
        {f"noisy ({example.meta['snr']:.0f} dB SNR)": example.noisy, "enhanced": enhanced, "clean": example.clean},
        example.sample_rate,
        run_dir / "spectrograms.png",
    )
    curve = training_curve_figure(run_dir / "logs" / "metrics.csv", run_dir / "training_curve.png")
    report = write_single_report(recipe, rows, result, profile, figure, curve, time.time() - started)
    return RunResult(run_dir, report, paths["enhanced"], text_table(rows, SUMMARY_COLUMNS), rows)


def write_single_report(recipe: Recipe, rows, result, profile, figure, curve, seconds: float) -> Path:
    """The run's markdown report: the score table, scores by SNR, cost, figures."""
    lines = report_head(recipe.name, recipe.data.corpus)
    lines += [
        f"Scored on the fixed test list ({result.count} mixtures, `test_list.csv`); SI-SDR is zero-mean "
        f"(Le Roux et al. 2019); PESQ {'wide' if recipe.data.sample_rate == 16000 else 'narrow'}band "
        f"({result.pesq_failures} PESQ failures left out of its mean). MACs: {profile['convention']} "
        f"convention, per second of audio; RTF measured on 1 thread.",
        "",
        markdown_table(rows, SUMMARY_COLUMNS),
        "",
        "## By input SNR",
        "",
        result.table(),
        "",
        "## Cost",
        "",
        "```json",
        json.dumps(profile, indent=2),
        "```",
        "",
        "## Figures",
        "",
        f"![noisy / enhanced / clean]({figure.name})",
    ]
    if curve is not None:
        lines += ["", f"![training curve]({curve.name})"]
    lines += ["", f"Wall time of the whole run: {seconds / 60:.1f} min."]
    path = recipe.run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

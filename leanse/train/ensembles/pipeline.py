"""The three ensemble recipes, top to bottom: train every stage, score, report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from leanse.checkpoint import load_checkpoint
from leanse.data.datamodule import Corpus, build_mixers, fixed_mixtures, read_corpus
from leanse.data.mixing import write_specs
from leanse.evaluate import evaluate_model
from leanse.models import build_model
from leanse.errors import ConfigError
from leanse.report import text_table
from leanse.train.ensembles.checks import check_shapes, check_speaker_plan, smole_partitioning
from leanse.train.ensembles.partition import Partitioning, partition_mixers, read_groups
from leanse.train.ensembles.report import write_example, write_report, write_tsne
from leanse.train.ensembles.scoring import SizeScores, score_size, summary_rows
from leanse.train.ensembles.steps import (
    SizeStages,
    Trained,
    assemble_naive,
    cluster_speakers,
    fine_tune,
    speaker_table,
    train_gate,
    train_group_classifier,
    train_siamese,
)
from leanse.train.recipe import Recipe, save_recipe, train_model
from leanse.train.single import RunResult
from leanse.train.stages import FineTuneStage, recipe_stages


def train_smole(recipe: Recipe) -> Trained:
    """000: generalist, specialists, gate, naive and fine-tuned ensembles for every size."""
    stages = recipe_stages(recipe)
    run_dir = _prepare(recipe)
    corpus = read_corpus(recipe.data)
    parts = smole_partitioning(recipe, stages, corpus)
    sizes = _sizes(recipe, stages.sizes)
    check_shapes(recipe.data, stages.gate.model, sizes)

    # The gate classifies whole noisy utterances into the K partitions (000 Sec. 2.2).
    gate = train_gate(recipe, corpus, parts, stages.gate, run_dir / "gate")
    trained = []
    for label, size in sizes:
        trained.append(train_size(recipe, corpus, parts, gate, label, size, run_dir / label,
                                  run_dir / label / "generalist", stages.finetune))
    return _trained(recipe, corpus, {"": (parts, gate, trained)})


def train_speaker_moe(recipe: Recipe) -> Trained:
    """001: Siamese f, k-means speaker groups, classifier g, then specialists and ensembles."""
    stages = recipe_stages(recipe)
    run_dir = _prepare(recipe)
    corpus = read_corpus(recipe.data)
    sizes = _sizes(recipe, stages.sizes)
    check_speaker_plan(recipe, stages, corpus, sizes)

    # 1. f: a speaker-verification embedding trained on pairs of noisy utterances (Sec. 2.2).
    embedding = train_siamese(recipe, corpus, stages.siamese, run_dir / "siamese")
    # 2. z <- f(s) for every utterance, averaged per speaker (Sec. 2.3).
    speakers = speaker_table(recipe, corpus, embedding, run_dir / "speakers.json")
    runs = {}
    for k in stages.ks:
        folder = run_dir / f"k{k}"
        # 3. k-means on the training speakers' means: K groups, written as groups.json.
        groups = cluster_speakers(speakers, k, recipe.train.seed, folder / "groups.json")
        parts = Partitioning("group", list(range(k)), groups)
        # 4. g: one dense layer on the frozen f, trained on the group labels (Sec. 2.4).
        gate = train_group_classifier(recipe, corpus, embedding, parts, stages.classifier, folder / "gate")
        # 5. specialists per group, the generalist, naive and fine-tuned ensembles (Sec. 2.5-2.6).
        trained = [
            train_size(recipe, corpus, parts, gate, label, size, folder / label,
                       run_dir / label / "generalist", stages.finetune)
            for label, size in sizes
        ]
        runs[f"k{k}"] = (parts, gate, trained)
    return _trained(recipe, corpus, runs, speakers)


def train_size(recipe: Recipe, corpus: Corpus, parts: Partitioning, gate: Path, label: str,
               size: dict[str, Any], folder: Path, generalist_dir: Path, finetune: FineTuneStage) -> SizeStages:
    """One specialist size: generalist, K specialists, naive ensemble, fine-tuned ensemble."""
    # The baseline: the same architecture trained on all the data (000 Fig. 1b).
    generalist = train_model(recipe, build_mixers(recipe.data, corpus), generalist_dir, size)
    # Specialists: the same architecture, each trained only on its partition (000 Sec. 2.1).
    specialists = []
    for k in range(parts.k):
        mixers = partition_mixers(parts.data(recipe.data, k), corpus)
        specialists.append(train_model(recipe, mixers, folder / f"specialist-{k}", size))
    # The naive ensemble: the independently pre-trained modules put together (000 Sec. 2.3).
    naive = assemble_naive(gate, specialists, folder / "naive", finetune.scale)
    # Fine-tuning in unison with soft gating (000 eq. 4-5, 001 Sec. 2.6).
    tuned = fine_tune(recipe, corpus, parts, naive, folder / "finetune", finetune)
    return SizeStages(label, size, generalist, specialists, naive, tuned)


def run_smole(recipe: Recipe) -> RunResult:
    """Train every stage (or reuse finished ones), score every model, write the report."""
    started = time.time()
    trained = train_smole(recipe)
    return _score_and_report(recipe, trained, started)


def run_speaker_moe(recipe: Recipe) -> RunResult:
    started = time.time()
    trained = train_speaker_moe(recipe)
    return _score_and_report(recipe, trained, started)


def _score_and_report(recipe: Recipe, trained: Trained, started: float) -> RunResult:
    run_dir = recipe.run_dir
    data = recipe.data
    test_specs = trained.mixers.test_specs
    workers = recipe.evaluate.workers
    generalist_rows: dict[str, list[dict[str, Any]]] = {}
    sections: dict[str, list[SizeScores]] = {}
    for key, (parts, gate_dir, sizes) in trained.runs.items():
        groups = read_groups(parts.groups)
        specs = [dataclasses.replace(s, group=groups.get(s.speaker, "")) for s in test_specs]
        test = fixed_mixtures(trained.mixers.test, specs)
        scores = []
        for stages in sizes:
            if stages.label not in generalist_rows:  # one generalist per size, whatever K
                model = load_checkpoint(stages.generalist)
                generalist_rows[stages.label] = evaluate_model(
                    model, test, run_dir / "evaluation" / stages.label / "generalist", workers).rows
            out = run_dir / "evaluation" / key / stages.label
            scores.append(score_size(parts, stages, test, generalist_rows[stages.label], out, workers))
        sections[key] = scores

    headline_key = next(iter(trained.runs))
    parts, _, sizes = trained.runs[headline_key]
    headline = sections[headline_key][0]
    example = write_example(run_dir, sizes[0].finetuned, trained.mixers, data.sample_rate)
    tsne = write_tsne(recipe, trained, run_dir) if trained.speakers else None
    report = write_report(recipe, trained, sections, example, tsne, time.time() - started)
    rows = summary_rows(headline, parts)
    return RunResult(run_dir, report, example["enhanced"], text_table(rows, list(rows[0])), rows)


def _trained(recipe: Recipe, corpus: Corpus, runs: dict, speakers: dict | None = None) -> Trained:
    mixers = build_mixers(recipe.data, corpus)
    write_specs(recipe.run_dir / "test_list.csv", mixers.test_specs)
    return Trained(corpus, mixers, runs, speakers or {})


def _prepare(recipe: Recipe) -> Path:
    run_dir = recipe.run_dir
    save_recipe(recipe, run_dir / "recipe.yaml")
    return run_dir


def _sizes(recipe: Recipe, sizes: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``(folder label, model config)`` of each specialist size; ``model`` first (the headline)."""
    configs = list(sizes) or [recipe.model]
    if recipe.model not in configs:
        raise ConfigError(
            f"model {recipe.model} is the headline size and must be one of stages.sizes ({configs})"
        )
    configs.remove(recipe.model)
    configs.insert(0, recipe.model)
    labels = [_size_label(c) for c in configs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"stages.sizes lists the same size twice: {labels}")
    for config in configs:
        build_model(config)  # an unknown preset or option fails here, before any training
    return list(zip(labels, configs))


def _size_label(config: dict[str, Any]) -> str:
    if set(config) == {"preset"}:
        return str(config["preset"])
    model = build_model(config)
    name = config.get("preset", model.registered_name)
    hidden, layers = getattr(model, "hidden_size", None), getattr(model, "num_layers", None)
    return f"{name}-{hidden}x{layers}" if hidden else str(name)


def train_ensemble_recipe(recipe: Recipe) -> Path:
    """``leanse train``: every stage; returns the headline fine-tuned ensemble's checkpoint."""
    trained = train_speaker_moe(recipe) if recipe.kind == "speaker_moe" else train_smole(recipe)
    _, _, sizes = next(iter(trained.runs.values()))
    return sizes[0].finetuned


def run_ensemble_recipe(recipe: Recipe) -> RunResult:
    """``leanse run``: every stage, then the scores and the report."""
    return run_speaker_moe(recipe) if recipe.kind == "speaker_moe" else run_smole(recipe)

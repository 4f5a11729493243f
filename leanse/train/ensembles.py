"""Sparse ensembles of specialists, stage by stage, as papers 000 and 001 tell them.

Three recipe kinds, each a short orchestration of the one training engine (:func:`fit`):

``smole_snr`` (000, "signal degradation")
    generalist -> K=4 specialists, one per input SNR {-5, 0, 5, 10} dB -> SNR gate -> naive
    ensemble -> fine-tuned ensemble (soft gating, lambda 10) -> test with hard gating.
``smole_gender`` (000, "speaker gender")
    the same with K=2 specialists, one per speaker sex, and the gender gate.
``speaker_moe`` (001)
    Siamese speaker embedding f on noisy pairs -> embed every clean training utterance -> mean per
    speaker -> k-means into K groups -> ``groups.json`` -> group classifier g on f -> K specialists,
    one per group -> naive -> fine-tuned (f, g and every specialist updated) -> hard gating.

Each stage is its own sub-folder of the run folder, and a stage whose checkpoint is finished
(``best/`` and ``done``) is not trained again, so a killed run picks up where it stopped::

    RUN/recipe.yaml, test_list.csv, report.md, *.png
    RUN/gate/                             000: the SNR or gender gate
    RUN/siamese/, RUN/speakers.json       001: f, and every speaker's mean embedding
    RUN/k{K}/groups.json, RUN/k{K}/gate/  001: k-means groups, the classifier g (+ frozen f)
    RUN/[k{K}/]{size}/specialist-{k}/     one per partition
    RUN/{size}/generalist/                the same-size model trained on everything
    RUN/[k{K}/]{size}/naive/              the pre-trained parts put together (parts.json)
    RUN/[k{K}/]{size}/finetune/           the fine-tuned ensemble
    RUN/evaluation/...                    per-file scores of every model

``stages.sizes`` lists the specialist sizes of a sweep (000 Fig. 2, 001 Fig. 3); ``model`` is the
headline size, reported first. The gate does not depend on the specialists' size, so it is trained
once; so is f in 001, and each size's generalist serves every K.

Choices the papers leave open are said where they are made: the gate trains on the same 1-s (5-s)
mixtures as the specialists; the fine-tuned ensemble is validated -- and its best epoch picked --
with hard gating, the way it is tested; 001's held-out speakers belong to the group of the nearest
k-means centroid (what "oracle" and per-group gate accuracy mean for speakers never clustered).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanse.audio import save_audio
from leanse.checkpoint import is_checkpoint, load_checkpoint, save_checkpoint
from leanse.complexity import profile_model, reduction
from leanse.config import from_dict, to_dict
from leanse.data.datamodule import (
    GENDER_CLASSES,
    Corpus,
    DataConfig,
    Mixers,
    MixtureDataset,
    PartitionConfig,
    build_mixers,
    fixed_mixtures,
    read_corpus,
)
from leanse.data.mixing import write_specs
from leanse.data.records import Mixture
from leanse.enhance import enhance_waveform
from leanse.ensemble.gates import Gate, build_gate
from leanse.ensemble.report import (
    gate_accuracy,
    gate_accuracy_figure,
    mean_of,
    si_sdri_figure,
    size_sweep_figure,
    snr_label,
    tsne_figure,
    tsne_points,
)
from leanse.ensemble.sparse import SparseEnsemble
from leanse.ensemble.speaker import GroupClassifier, SpeakerEmbedding, SpeakerGate, speaker_groups
from leanse.errors import CheckpointError, ConfigError, CorpusError
from leanse.evaluate import evaluate_model
from leanse.models import build_model
from leanse.report import DEMO_NOTE, markdown_table, spectrogram_figure, text_table
from leanse.train.classify import (
    GateTask,
    PairDataset,
    VerificationTask,
    embed_utterances,
    load_gate,
    predict_classes,
)
from leanse.train.engine import BEST, EnhancementTask, TrainConfig, fit
from leanse.train.recipe import Recipe, save_recipe, train_model
from leanse.train.single import RunResult

# ================================================================================================
# The recipes' ``stages:`` section (checked key by key, like the rest of a recipe)
# ================================================================================================


@dataclass
class GateStage:
    model: dict[str, Any] = field(default_factory=dict)  # gate config or {preset: ...}
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the recipe's train section


@dataclass
class TrainStage:
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class FineTuneStage:
    scale: float = 10.0  # lambda of 000 eq. 5 ("base e^10" in 001 Sec. 2.6)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class SiameseStage:
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "speaker-embed-32x2-8k"})
    train: dict[str, Any] = field(default_factory=dict)
    pairs_per_epoch: int = 2000
    valid_pairs: int = 200


@dataclass
class SmoleStages:
    """000: ``partition`` lists one value per specialist: the SNRs in dB (equal to ``data.snrs``,
    whose order is the gate's class order) or ``[M, F]``."""

    partition: list[Any] = field(default_factory=list)
    sizes: list[dict[str, Any]] = field(default_factory=list)
    gate: GateStage = field(default_factory=GateStage)
    finetune: FineTuneStage = field(default_factory=FineTuneStage)


@dataclass
class SpeakerStages:
    """001: ``ks`` lists the numbers of speaker groups to build (2, 5, 10 in the paper)."""

    ks: list[int] = field(default_factory=lambda: [2, 5, 10])
    sizes: list[dict[str, Any]] = field(default_factory=list)
    siamese: SiameseStage = field(default_factory=SiameseStage)
    classifier: TrainStage = field(default_factory=TrainStage)
    finetune: FineTuneStage = field(default_factory=lambda: FineTuneStage(train={"lr": 1e-4}))
    tsne_perplexity: float = 40.0  # 001 Sec. 2.3


# ================================================================================================
# Partitions: which specialist an utterance belongs to
# ================================================================================================


@dataclass
class Partitioning:
    """Specialist ``k`` handles the mixtures whose label is ``values[k]``; the gate predicts ``k``."""

    by: str  # snr | gender | group
    values: list[Any]
    groups: Path | None = None  # speaker -> group JSON (001)

    @property
    def k(self) -> int:
        return len(self.values)

    @property
    def names(self) -> list[str]:
        if self.by == "snr":
            return [f"{v:g} dB" for v in self.values]
        if self.by == "gender":
            return [str(v) for v in self.values]
        return [f"group {v}" for v in self.values]

    @property
    def gate_label(self) -> str:
        return {"snr": "snr_class", "gender": "gender_class", "group": "group"}[self.by]

    def data(self, data: DataConfig, k: int) -> DataConfig:
        """The recipe's data restricted to partition ``k`` (000 Sec. 3, 001 Sec. 2.5)."""
        groups = str(self.groups) if self.groups else None
        return dataclasses.replace(data, partition=PartitionConfig(self.by, self.values[k], groups))

    def label(self, meta: dict[str, Any]) -> int:
        """The true partition of a mixture (what the oracle uses and the gate should predict)."""
        if self.by == "snr":
            return int(np.argmin([abs(float(meta["snr"]) - v) for v in self.values]))
        if self.by == "gender":
            return self.values.index(meta["gender"])
        return int(meta["group"])


# ================================================================================================
# The three recipes, top to bottom
# ================================================================================================


@dataclass
class SizeStages:
    """The checkpoints of one specialist size."""

    label: str
    model: dict[str, Any]
    generalist: Path
    specialists: list[Path]
    naive: Path
    finetuned: Path


@dataclass
class Trained:
    """Everything a run trained, ready to be scored."""

    corpus: Corpus
    mixers: Mixers  # the whole data: test list, validation list
    runs: dict[str, tuple[Partitioning, Path, list[SizeStages]]]  # "" or "k5" -> (partitioning, gate, sizes)
    speakers: dict[str, Any] = field(default_factory=dict)  # 001: speaker table (means, sex, split)


def train_smole(recipe: Recipe) -> Trained:
    """000: generalist, specialists, gate, naive and fine-tuned ensembles for every size."""
    stages = from_dict(SmoleStages, recipe.stages, "stages")
    run_dir = _prepare(recipe)
    corpus = read_corpus(recipe.data)
    parts = _smole_partitioning(recipe, stages, corpus)
    sizes = _sizes(recipe, stages.sizes)
    _check_shapes(recipe.data, stages.gate.model, sizes)

    # The gate classifies whole noisy utterances into the K partitions (000 Sec. 2.2).
    gate = train_gate(recipe, corpus, parts, stages.gate, run_dir / "gate")
    trained = []
    for label, size in sizes:
        trained.append(train_size(recipe, corpus, parts, gate, label, size, run_dir / label,
                                  run_dir / label / "generalist", stages.finetune))
    return _trained(recipe, corpus, {"": (parts, gate, trained)})


def train_speaker_moe(recipe: Recipe) -> Trained:
    """001: Siamese f, k-means speaker groups, classifier g, then specialists and ensembles."""
    stages = from_dict(SpeakerStages, recipe.stages, "stages")
    run_dir = _prepare(recipe)
    corpus = read_corpus(recipe.data)
    sizes = _sizes(recipe, stages.sizes)
    _check_speaker_plan(recipe, stages, corpus, sizes)

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
    torch.manual_seed(recipe.train.seed)
    generalist = train_model(recipe, build_mixers(recipe.data, corpus), generalist_dir, size)
    # Specialists: the same architecture, each trained only on its partition (000 Sec. 2.1).
    specialists = []
    for k in range(parts.k):
        torch.manual_seed(recipe.train.seed)
        mixers = _partition_mixers(parts.data(recipe.data, k), corpus)
        specialists.append(train_model(recipe, mixers, folder / f"specialist-{k}", size))
    # The naive ensemble: the independently pre-trained modules put together (000 Sec. 2.3).
    naive = assemble_naive(gate, specialists, folder / "naive", finetune.scale)
    # Fine-tuning in unison with soft gating (000 eq. 4-5, 001 Sec. 2.6).
    tuned = fine_tune(recipe, corpus, parts, naive, folder / "finetune", finetune)
    return SizeStages(label, size, generalist, specialists, naive, tuned)


# ================================================================================================
# Stages
# ================================================================================================


def train_gate(recipe: Recipe, corpus: Corpus, parts: Partitioning, stage: GateStage, run_dir: Path) -> Path:
    """000 Sec. 2.2 / 3: the RNN gate, BCE against the one-hot partition of each mixture."""
    if _finished(run_dir):
        return run_dir / BEST
    torch.manual_seed(recipe.train.seed)
    gate = build_gate(stage.model)
    config = _stage_train(recipe.train, stage.train, "stages.gate.train")
    mixers = _full_mixers(recipe.data, corpus, None)
    return _fit_stage(recipe, gate, mixers, config, run_dir, GateTask(gate, config, parts.gate_label), "gate")


def train_siamese(recipe: Recipe, corpus: Corpus, stage: SiameseStage, run_dir: Path) -> Path:
    """001 Sec. 2.2: f as a Siamese verifier, ``sigmoid(<f(x_i), f(x_j)>)``, BCE, balanced pairs."""
    if _finished(run_dir):
        return run_dir / BEST
    torch.manual_seed(recipe.train.seed)
    embedding = build_gate(stage.model)
    if not isinstance(embedding, SpeakerEmbedding):
        raise ConfigError("stages.siamese.model must be a speaker_embedding (e.g. speaker-embed-32x2-8k)")
    config = _stage_train(recipe.train, stage.train, "stages.siamese.train")
    options = recipe.data.mixing_options(None)
    data = recipe.data
    if options.segment_seconds is None:
        raise ConfigError("the Siamese pairs are batched segments: set data.segment_seconds (001: 5 s)")
    train_set = PairDataset(corpus.train, corpus.train_noise, options, stage.pairs_per_epoch, data.seed)
    valid_set = PairDataset(corpus.valid, corpus.valid_noise, options, stage.valid_pairs, data.seed,
                            fixed=True, prefix="valid-pair")
    best = fit(embedding, train_set, valid_set, config, run_dir, batch_size=data.batch_size,
               num_workers=data.num_workers, valid_batch_size=data.batch_size,
               meta={"recipe": recipe.name, "stage": "siamese"}, task=VerificationTask(embedding, config))
    _mark_done(run_dir)
    return best


def speaker_table(recipe: Recipe, corpus: Corpus, embedding_dir: Path, path: Path) -> dict[str, Any]:
    """001 Sec. 2.3: every speaker's mean embedding of its clean utterances, with sex and split.

    Held-out (validation / test) speakers are embedded too: they are never clustered, but the
    nearest centroid gives them a group for the oracle and the per-group gate accuracy. Written to
    ``path`` (``speakers.json``) once.
    """
    if path.is_file():
        return json.loads(path.read_text())
    splits = {"train": corpus.train, "valid": corpus.valid, "test": corpus.test}
    table = speaker_means_table(load_gate(embedding_dir), splits, recipe.data)
    _write_json(path, table)
    return table


def speaker_means_table(f: torch.nn.Module, splits: dict[str, list], data: DataConfig) -> dict[str, Any]:
    """``{speaker: {split, gender, mean, utterances}}`` for the utterances of each split."""
    table: dict[str, Any] = {}
    for split, utterances in splits.items():
        sex = {u.speaker: u.gender for u in utterances}
        for speaker, vectors in embed_utterances(f.eval(), utterances, data.mixing_options(None)).items():
            table.setdefault(speaker, {"split": split, "gender": sex[speaker], "mean": vectors.mean(0).tolist(),
                                       "utterances": len(vectors)})
    return table


def cluster_speakers(speakers: dict[str, Any], k: int, seed: int, path: Path) -> Path:
    """001 Sec. 2.3: k-means on the training speakers' mean embeddings -> ``groups.json``.

    ``groups.json`` maps every speaker to a group: training speakers by k-means, held-out ones by
    the nearest centroid (the mean of a group's members, which is where k-means converged).
    ``clusters.json`` beside it says which was which.
    """
    if path.is_file():
        return path
    train = {s: torch.tensor(v["mean"]) for s, v in speakers.items() if v["split"] == "train"}
    groups = speaker_groups(train, k, seed=seed)
    centroids = torch.stack([torch.stack([train[s] for s in train if groups[s] == g]).mean(0) for g in range(k)])
    detail = {}
    for speaker, info in speakers.items():
        if speaker in groups:
            group, how = groups[speaker], "k-means"
        else:
            group, how = int(torch.cdist(torch.tensor([info["mean"]]), centroids).argmin()), "nearest centroid"
        detail[speaker] = {"group": group, "how": how, "split": info["split"], "gender": info["gender"]}
    _write_json(path.with_name("clusters.json"), detail)
    _write_json(path, {speaker: str(d["group"]) for speaker, d in detail.items()})
    return path


def train_group_classifier(recipe: Recipe, corpus: Corpus, embedding_dir: Path, parts: Partitioning,
                           stage: TrainStage, run_dir: Path) -> Path:
    """001 Sec. 2.4: ``p = softmax(g(f(x)))`` with f frozen, trained on the k-means groups."""
    if _finished(run_dir):
        return run_dir / BEST
    torch.manual_seed(recipe.train.seed)
    f = load_gate(embedding_dir)
    gate = SpeakerGate.from_parts(f, GroupClassifier(f.hidden_size, parts.k)).train()
    gate.freeze_embedding()  # only g learns here; fine-tuning unfreezes f (Sec. 2.6)
    config = _stage_train(recipe.train, stage.train, "stages.classifier.train")
    mixers = _full_mixers(recipe.data, corpus, parts.groups)
    return _fit_stage(recipe, gate, mixers, config, run_dir, GateTask(gate, config, "group"), "classifier")


def assemble_naive(gate_dir: Path, specialist_dirs: list[Path], out: Path, scale: float) -> Path:
    """000 Sec. 2.3: the naive ensemble. ``parts.json`` records which files it was built from."""
    if _finished(out):
        return out / BEST
    parts = {"gate": str(gate_dir), "specialists": [str(p) for p in specialist_dirs], "scale": scale}
    _write_json(out / "parts.json", parts)
    ensemble = load_parts(out / "parts.json")
    save_checkpoint(ensemble, out / BEST, {"stage": "naive", **parts})
    _mark_done(out)
    return out / BEST


def load_parts(manifest: Path) -> SparseEnsemble:
    """Build a hard-gated ensemble from a ``parts.json`` (gate + specialist checkpoint folders).

    Every part must exist and they must fit together (K, sample rate, STFT); otherwise a
    :class:`CheckpointError` says which part and what to do.
    """
    try:
        parts = json.loads(Path(manifest).read_text())
        gate_dir, specialist_dirs = Path(parts["gate"]), [Path(p) for p in parts["specialists"]]
        scale = float(parts.get("scale", 10.0))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{manifest}: not an ensemble parts file ({err})") from None
    missing = ([f"gate {gate_dir}"] if not is_checkpoint(gate_dir) else []) + [
        f"specialist {k} {path}" for k, path in enumerate(specialist_dirs) if not is_checkpoint(path)
    ]
    if missing:
        raise CheckpointError(
            f"{manifest}: the ensemble's parts are missing: {', '.join(missing)}; train them again "
            f"(delete this folder and re-run the recipe: finished stages are kept)"
        )
    gate = load_gate(gate_dir)
    specialists = [load_checkpoint(path) for path in specialist_dirs]
    try:
        return SparseEnsemble.from_parts(gate, specialists, mode="hard", scale=scale)
    except ConfigError as err:
        raise CheckpointError(f"{manifest}: the ensemble's parts do not fit together: {err}") from None


class FineTuneTask(EnhancementTask):
    """Trains a :class:`SparseEnsemble` with soft gating (000 eq. 4-5) and validates it with hard
    gating (eq. 3), the way it is tested, so the exported best epoch is the best hard ensemble."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.model.mode = "soft"
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.model.mode = "hard"
        super().validation_step(batch, batch_idx)

    def on_train_end(self) -> None:
        self.model.mode = "hard"


def fine_tune(recipe: Recipe, corpus: Corpus, parts: Partitioning, naive: Path, run_dir: Path,
              stage: FineTuneStage) -> Path:
    """000 Sec. 2.3 / 001 Sec. 2.6: gate and all specialists updated together on all the data."""
    if _finished(run_dir):
        return run_dir / BEST
    torch.manual_seed(recipe.train.seed)
    ensemble = load_checkpoint(naive).train()  # checkpoints load in eval mode
    ensemble.scale = float(stage.scale)
    ensemble.requires_grad_(True)  # f too: 001 fine-tunes the embedding, the classifier and h
    config = _stage_train(recipe.train, stage.train, "stages.finetune.train")
    mixers = _full_mixers(recipe.data, corpus, parts.groups)
    return _fit_stage(recipe, ensemble, mixers, config, run_dir, FineTuneTask(ensemble, config), "finetune")


# ================================================================================================
# Scoring and the report
# ================================================================================================


def run_smole(recipe: Recipe) -> RunResult:
    """Train every stage (or reuse finished ones), score every model, write the report."""
    started = time.time()
    trained = train_smole(recipe)
    return _score_and_report(recipe, trained, started)


def run_speaker_moe(recipe: Recipe) -> RunResult:
    started = time.time()
    trained = train_speaker_moe(recipe)
    return _score_and_report(recipe, trained, started)


@dataclass
class SizeScores:
    label: str
    rows: dict[str, list[dict[str, Any]]]  # model name -> per-file rows
    specialist_names: list[str]
    gates: dict[str, dict[str, Any]]  # naive / fine-tuned -> gate_accuracy()
    costs: dict[str, dict[str, Any]]
    reductions: dict[str, float]
    generalist_on_partition: dict[str, float | None]


def _score_and_report(recipe: Recipe, trained: Trained, started: float) -> RunResult:
    run_dir = recipe.run_dir
    data = recipe.data
    test_specs = trained.mixers.test_specs
    workers = recipe.evaluate.workers
    generalist_rows: dict[str, list[dict[str, Any]]] = {}
    sections: dict[str, list[SizeScores]] = {}
    for key, (parts, gate_dir, sizes) in trained.runs.items():
        groups = _read_groups(parts.groups)
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
    example = _example(run_dir, sizes[0].finetuned, trained.mixers, data.sample_rate)
    tsne = _tsne(recipe, trained, run_dir) if trained.speakers else None
    report = write_report(recipe, trained, sections, example, tsne, time.time() - started)
    rows = summary_rows(headline, parts)
    return RunResult(run_dir, report, example["enhanced"], text_table(rows, list(rows[0])), rows)


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
    for label in _snr_columns(snrs):
        out[label] = mean_of([r for r in rows if snr_label(float(r["snr"]), snrs) == label])
    if extra == "gender":
        for sex in GENDER_CLASSES:
            out[sex] = mean_of([r for r in rows if r.get("gender") == sex])
    return out


def _snr_columns(snrs: list[float] | None) -> list[str]:
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


def write_report(recipe: Recipe, trained: Trained, sections: dict[str, list[SizeScores]],
                 example: dict[str, Any], tsne: Path | None, seconds: float) -> Path:
    """``report.md`` with its PNG figures, in the run folder."""
    run_dir = recipe.run_dir
    data = recipe.data
    extra = "gender" if recipe.kind == "smole_gender" else None
    columns = ["all", *_snr_columns(data.snrs)] + (list(GENDER_CLASSES) if extra else [])
    n_test = len(trained.mixers.test_specs)
    lines = [f"# {recipe.name} ({recipe.kind})", ""]
    if data.corpus == "demo":
        lines += [f"> {DEMO_NOTE}", ""]
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


def _tsne(recipe: Recipe, trained: Trained, run_dir: Path) -> Path:
    """001 Fig. 2: mean embeddings before (f) and after fine-tuning (f of the headline ensemble)."""
    stages = from_dict(SpeakerStages, recipe.stages, "stages")
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
    _write_json(run_dir / "tsne.json", {"perplexity": perplexity, "speakers": train, "kmeans": kmeans,
                                        "finetuned_classifier": chosen, "agreement": float(agree)})
    return path


def _example(run_dir: Path, model_dir: Path, mixers: Mixers, rate: int) -> dict[str, Any]:
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


# ================================================================================================
# Checks that fail before anything is trained
# ================================================================================================


def _smole_partitioning(recipe: Recipe, stages: SmoleStages, corpus: Corpus) -> Partitioning:
    """The K partitions of 000 and the checks that K, the data and the gate agree."""
    gate = build_gate(stages.gate.model) if stages.gate.model else None
    if not isinstance(gate, Gate):
        raise ConfigError("stages.gate.model: give the gate, e.g. {preset: snr-gate-128x2}")
    values = list(stages.partition)
    if recipe.kind == "smole_snr":
        snrs = recipe.data.snrs
        if not snrs:
            raise ConfigError("smole_snr needs discrete SNRs: set data.snrs (e.g. [-5, 0, 5, 10]), not data.snr_range")
        values = [float(v) for v in values] if values else [float(s) for s in snrs]
        if values != [float(s) for s in snrs]:
            raise ConfigError(
                f"stages.partition {values} must list data.snrs {snrs} in the same order: one specialist per "
                f"training SNR, and the gate's class k is the k-th SNR"
            )
        parts = Partitioning("snr", values)
    else:
        values = values or list(GENDER_CLASSES)
        if values != list(GENDER_CLASSES):
            raise ConfigError(f"stages.partition for the gender gate must be {list(GENDER_CLASSES)} (class order), got {values}")
        _check_gender_labels(corpus)
        parts = Partitioning("gender", values)
    if gate.num_classes != parts.k:
        raise ConfigError(
            f"the gate chooses between K={gate.num_classes} specialists but the partition has {parts.k} "
            f"({', '.join(parts.names)}): give the gate num_classes={parts.k} or change stages.partition"
        )
    if gate.sample_rate != recipe.data.sample_rate:
        raise ConfigError(f"the gate runs at {gate.sample_rate} Hz but data.sample_rate is {recipe.data.sample_rate}")
    return parts


def _check_gender_labels(corpus: Corpus) -> None:
    for split, utterances in (("training", corpus.train), ("validation", corpus.valid), ("test", corpus.test)):
        unlabelled = sorted({u.speaker for u in utterances if u.gender not in GENDER_CLASSES})
        if unlabelled:
            raise CorpusError(
                f"the gender gate needs every speaker's sex, but {len(unlabelled)} {split} speakers have none "
                f"({', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''}): give it in SPEAKERS.TXT "
                f"(LibriSpeech) or a 'gender' column (M/F) of the manifest"
            )


def _check_speaker_plan(recipe: Recipe, stages: SpeakerStages, corpus: Corpus, sizes: list) -> None:
    if not stages.ks or any(k < 2 for k in stages.ks):
        raise ConfigError(f"stages.ks: give numbers of speaker groups >= 2 (001: [2, 5, 10]), got {stages.ks}")
    speakers = {u.speaker for u in corpus.train}
    if len(speakers) < max(stages.ks):
        raise CorpusError(
            f"cannot form K={max(stages.ks)} speaker groups from {len(speakers)} training speakers: lower "
            f"stages.ks or use a corpus with more speakers"
        )
    embedding = build_gate(stages.siamese.model)
    if not isinstance(embedding, SpeakerEmbedding):
        raise ConfigError("stages.siamese.model must be a speaker_embedding (e.g. speaker-embed-32x2-8k)")
    gate = {"name": "speaker_gate", "num_classes": stages.ks[0], "embedding_size": embedding.hidden_size,
            "num_layers": embedding.num_layers, "rnn_type": embedding.rnn_type, "n_fft": embedding.n_fft,
            "hop_length": embedding.hop_length, "sample_rate": embedding.sample_rate}
    _check_shapes(recipe.data, gate, sizes)


def _check_shapes(data: DataConfig, gate: dict[str, Any], sizes: list[tuple[str, dict[str, Any]]]) -> None:
    """Build each size's ensemble once, empty, so a gate / specialist mismatch fails now, not after hours."""
    for label, size in sizes:
        try:
            ensemble = SparseEnsemble(gate=gate, specialist=size)
        except ConfigError as err:
            raise ConfigError(f"size {label}: the gate and the specialists do not fit together: {err}") from None
        if ensemble.sample_rate != data.sample_rate:
            raise ConfigError(f"the ensemble runs at {ensemble.sample_rate} Hz but data.sample_rate is {data.sample_rate}")


# ================================================================================================
# Small helpers
# ================================================================================================


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


def _stage_train(base: TrainConfig, overrides: dict[str, Any], where: str) -> TrainConfig:
    return from_dict(TrainConfig, {**to_dict(base), **overrides}, where)


def _finished(run_dir: Path) -> bool:
    return (run_dir / BEST).is_dir() and (run_dir / "done").is_file()


def _mark_done(run_dir: Path) -> None:
    (run_dir / "done").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def _fit_stage(recipe: Recipe, model: torch.nn.Module, mixers: Mixers, config: TrainConfig, run_dir: Path,
               task: Any, stage: str) -> Path:
    data = recipe.data
    write_specs(run_dir / "valid_list.csv", mixers.valid_specs)
    best = fit(
        model,
        MixtureDataset(mixers.train, size=data.examples_per_epoch, seed=data.seed),
        MixtureDataset(mixers.valid, specs=mixers.valid_specs),
        config,
        run_dir,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        valid_batch_size=data.batch_size if data.eval_segment_seconds else 1,
        meta={"recipe": recipe.name, "stage": stage},
        task=task,
    )
    _mark_done(run_dir)
    return best


def _read_groups(path: Path | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(path.read_text()).items()} if path else {}


def _full_mixers(data: DataConfig, corpus: Corpus, groups: Path | None) -> Mixers:
    """All the data, mixtures labelled with their speaker's group when there are groups."""
    mixers = build_mixers(dataclasses.replace(data, partition=None), corpus)
    mapping = _read_groups(groups)
    if mapping:
        for mixer in (mixers.train, mixers.valid, mixers.test):
            mixer.groups = mapping
        mixers.valid_specs = [dataclasses.replace(s, group=mapping.get(s.speaker, "")) for s in mixers.valid_specs]
        mixers.test_specs = [dataclasses.replace(s, group=mapping.get(s.speaker, "")) for s in mixers.test_specs]
    return mixers


def _partition_mixers(data: DataConfig, corpus: Corpus) -> Mixers:
    """A specialist's data. A partition without validation utterances (a speaker group no validation
    speaker falls in, a sex missing from a small hold-out) validates on the whole validation set
    rather than failing."""
    partition = data.partition
    if partition is not None and partition.by in ("gender", "group"):
        mapping = _read_groups(Path(partition.groups)) if partition.by == "group" else {}
        label = (lambda u: u.gender) if partition.by == "gender" else (lambda u: mapping.get(u.speaker))
        if not any(label(u) == str(partition.value) for u in corpus.valid):
            whole = build_mixers(dataclasses.replace(data, partition=None), corpus)
            own = build_mixers(data, dataclasses.replace(corpus, valid=corpus.train))
            return Mixers(own.train, whole.valid, whole.test, whole.valid_specs, whole.test_specs)
    return build_mixers(data, corpus)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


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


def train_ensemble_recipe(recipe: Recipe) -> Path:
    """``leanse train``: every stage; returns the headline fine-tuned ensemble's checkpoint."""
    trained = train_speaker_moe(recipe) if recipe.kind == "speaker_moe" else train_smole(recipe)
    _, _, sizes = next(iter(trained.runs.values()))
    return sizes[0].finetuned


def run_ensemble_recipe(recipe: Recipe) -> RunResult:
    """``leanse run``: every stage, then the scores and the report."""
    return run_speaker_moe(recipe) if recipe.kind == "speaker_moe" else run_smole(recipe)

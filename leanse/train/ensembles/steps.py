"""The stages of the ensemble recipes, one function each, and what they leave behind.

Every stage trains into its own folder through :func:`leanse.train.runner.run_stage`, so a finished
stage is not trained again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from leanse.checkpoint import is_checkpoint, load_checkpoint, save_checkpoint
from leanse.data.datamodule import Corpus, DataConfig, Mixers
from leanse.ensemble.gates import build_gate
from leanse.ensemble.sparse import SparseEnsemble
from leanse.ensemble.speaker import GroupClassifier, SpeakerEmbedding, SpeakerGate, speaker_groups
from leanse.errors import CheckpointError, ConfigError
from leanse.train.classify import GateTask, PairDataset, VerificationTask, embed_utterances, load_gate
from leanse.train.engine import BEST, EnhancementTask, fit
from leanse.train.ensembles.partition import Partitioning, full_mixers
from leanse.train.recipe import Recipe
from leanse.train.runner import fit_mixtures, run_stage
from leanse.train.stages import FineTuneStage, GateStage, SiameseStage, StageTrain, stage_train_config


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


def train_gate(recipe: Recipe, corpus: Corpus, parts: Partitioning, stage: GateStage, run_dir: Path) -> Path:
    """000 Sec. 2.2 / 3: the RNN gate, BCE against the one-hot partition of each mixture."""

    def train() -> Path:
        torch.manual_seed(recipe.train.seed)
        gate = build_gate(stage.model)
        config = stage_train_config(recipe.train, stage.train, "stages.gate.train")
        mixers = full_mixers(recipe.data, corpus, None)
        task = GateTask(gate, config, parts.gate_label)
        return fit_mixtures(recipe, gate, mixers, config, run_dir, task, {"stage": "gate"})

    return run_stage(run_dir, train)


def train_siamese(recipe: Recipe, corpus: Corpus, stage: SiameseStage, run_dir: Path) -> Path:
    """001 Sec. 2.2: f as a Siamese verifier, ``sigmoid(<f(x_i), f(x_j)>)``, BCE, balanced pairs."""

    def train() -> Path:
        torch.manual_seed(recipe.train.seed)
        embedding = build_gate(stage.model)
        if not isinstance(embedding, SpeakerEmbedding):
            raise ConfigError("stages.siamese.model must be a speaker_embedding (e.g. speaker-embed-32x2-8k)")
        config = stage_train_config(recipe.train, stage.train, "stages.siamese.train")
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
        return best

    return run_stage(run_dir, train)


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
    write_json(path, table)
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
    write_json(path.with_name("clusters.json"), detail)
    write_json(path, {speaker: str(d["group"]) for speaker, d in detail.items()})
    return path


def train_group_classifier(recipe: Recipe, corpus: Corpus, embedding_dir: Path, parts: Partitioning,
                           stage: StageTrain, run_dir: Path) -> Path:
    """001 Sec. 2.4: ``p = softmax(g(f(x)))`` with f frozen, trained on the k-means groups."""

    def train() -> Path:
        torch.manual_seed(recipe.train.seed)
        f = load_gate(embedding_dir)
        gate = SpeakerGate.from_parts(f, GroupClassifier(f.hidden_size, parts.k)).train()
        gate.freeze_embedding()  # only g learns here; fine-tuning unfreezes f (Sec. 2.6)
        config = stage_train_config(recipe.train, stage.train, "stages.classifier.train")
        mixers = full_mixers(recipe.data, corpus, parts.groups)
        task = GateTask(gate, config, "group")
        return fit_mixtures(recipe, gate, mixers, config, run_dir, task, {"stage": "classifier"})

    return run_stage(run_dir, train)


def assemble_naive(gate_dir: Path, specialist_dirs: list[Path], out: Path, scale: float) -> Path:
    """000 Sec. 2.3: the naive ensemble. ``parts.json`` records which files it was built from."""

    def train() -> Path:
        parts = {"gate": str(gate_dir), "specialists": [str(p) for p in specialist_dirs], "scale": scale}
        write_json(out / "parts.json", parts)
        ensemble = load_parts(out / "parts.json")
        save_checkpoint(ensemble, out / BEST, {"stage": "naive", **parts})
        return out / BEST

    return run_stage(out, train)


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

    def train() -> Path:
        torch.manual_seed(recipe.train.seed)
        ensemble = load_checkpoint(naive).train()  # checkpoints load in eval mode
        ensemble.scale = float(stage.scale)
        ensemble.requires_grad_(True)  # f too: 001 fine-tunes the embedding, the classifier and h
        config = stage_train_config(recipe.train, stage.train, "stages.finetune.train")
        mixers = full_mixers(recipe.data, corpus, parts.groups)
        task = FineTuneTask(ensemble, config)
        return fit_mixtures(recipe, ensemble, mixers, config, run_dir, task, {"stage": "finetune"})

    return run_stage(run_dir, train)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)

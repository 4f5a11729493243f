"""Checks that fail before anything is trained."""

from __future__ import annotations

from collections import Counter
from typing import Any

from leanse.data.datamodule import GENDER_CLASSES, Corpus, DataConfig
from leanse.ensemble.gates import Gate, build_gate
from leanse.ensemble.sparse import SparseEnsemble
from leanse.ensemble.speaker import SpeakerEmbedding
from leanse.errors import ConfigError, CorpusError
from leanse.train.ensembles.partition import Partitioning
from leanse.train.recipe import Recipe
from leanse.train.stages import SmoleStages, SpeakerStages


def smole_partitioning(recipe: Recipe, stages: SmoleStages, corpus: Corpus) -> Partitioning:
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
        check_gender_labels(corpus)
        parts = Partitioning("gender", values)
        check_partitions_have_training_data(parts, corpus)
    if gate.num_classes != parts.k:
        raise ConfigError(
            f"the gate chooses between K={gate.num_classes} specialists but the partition has {parts.k} "
            f"({', '.join(parts.names)}): give the gate num_classes={parts.k} or change stages.partition"
        )
    if gate.sample_rate != recipe.data.sample_rate:
        raise ConfigError(f"the gate runs at {gate.sample_rate} Hz but data.sample_rate is {recipe.data.sample_rate}")
    return parts


def check_gender_labels(corpus: Corpus) -> None:
    for split, utterances in (("training", corpus.train), ("validation", corpus.valid), ("test", corpus.test)):
        unlabelled = sorted({u.speaker for u in utterances if u.gender not in GENDER_CLASSES})
        if unlabelled:
            raise CorpusError(
                f"the gender gate needs every speaker's sex, but {len(unlabelled)} {split} speakers have none "
                f"({', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''}): give it in SPEAKERS.TXT "
                f"(LibriSpeech) or a 'gender' column (M/F) of the manifest"
            )


def check_speaker_plan(recipe: Recipe, stages: SpeakerStages, corpus: Corpus, sizes: list) -> None:
    if not stages.ks or any(k < 2 for k in stages.ks):
        raise ConfigError(f"stages.ks: give numbers of speaker groups >= 2 (001: [2, 5, 10]), got {stages.ks}")
    speakers = {u.speaker for u in corpus.train}
    if len(speakers) < max(stages.ks):
        raise CorpusError(
            f"cannot form K={max(stages.ks)} speaker groups from {len(speakers)} training speakers: lower "
            f"stages.ks or use a corpus with more speakers"
        )
    # 001 Sec. 2.2: half the Siamese pairs are same-speaker, half different-speaker, in each split.
    check_pair_split("training", corpus.train, stages.siamese.pairs_per_epoch, "pairs_per_epoch")
    check_pair_split("validation", corpus.valid, stages.siamese.valid_pairs, "valid_pairs")
    embedding = build_gate(stages.siamese.model)
    if not isinstance(embedding, SpeakerEmbedding):
        raise ConfigError("stages.siamese.model must be a speaker_embedding (e.g. speaker-embed-32x2-8k)")
    gate = {"name": "speaker_gate", "num_classes": stages.ks[0], "embedding_size": embedding.hidden_size,
            "num_layers": embedding.num_layers, "rnn_type": embedding.rnn_type, "n_fft": embedding.n_fft,
            "hop_length": embedding.hop_length, "sample_rate": embedding.sample_rate}
    check_shapes(recipe.data, gate, sizes)


def check_pair_split(split: str, utterances: list, pairs: int, key: str) -> None:
    """A split can give Siamese pairs: two speakers (different pairs), one with two utterances (same pairs)."""
    if pairs < 2:
        raise ConfigError(f"stages.siamese.{key}: at least 2 pairs (one same-, one different-speaker), got {pairs}")
    per_speaker = Counter(u.speaker for u in utterances)
    if len(per_speaker) < 2:
        raise CorpusError(
            f"the Siamese {split} pairs need at least two {split} speakers (different-speaker pairs), but the "
            f"corpus has {len(per_speaker)}: add speakers to its {split} split"
        )
    if max(per_speaker.values()) < 2:
        raise CorpusError(
            f"the Siamese {split} pairs need a {split} speaker with at least two utterances (same-speaker "
            f"pairs); none has: add utterances to its {split} split"
        )


def check_partitions_have_training_data(parts: Partitioning, corpus: Corpus) -> None:
    """Every specialist of a speaker-sex partition has training speakers (SNR partitions always do:
    every mixture is made at every SNR; k-means gives every speaker group a training speaker)."""
    if parts.by != "gender":
        return
    missing = [sex for sex in parts.values if not any(u.gender == sex for u in corpus.train)]
    if missing:
        raise CorpusError(
            f"the specialist for speaker sex {', '.join(missing)} would have no training speakers: use a corpus "
            f"whose training split has both sexes"
        )


def check_shapes(data: DataConfig, gate: dict[str, Any], sizes: list[tuple[str, dict[str, Any]]]) -> None:
    """Build each size's ensemble once, empty, so a gate / specialist mismatch fails now, not after hours."""
    for label, size in sizes:
        try:
            ensemble = SparseEnsemble(gate=gate, specialist=size)
        except ConfigError as err:
            raise ConfigError(f"size {label}: the gate and the specialists do not fit together: {err}") from None
        if ensemble.sample_rate != data.sample_rate:
            raise ConfigError(f"the ensemble runs at {ensemble.sample_rate} Hz but data.sample_rate is {data.sample_rate}")

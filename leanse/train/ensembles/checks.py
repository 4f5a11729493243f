"""Checks that fail before anything is trained."""

from __future__ import annotations

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
    embedding = build_gate(stages.siamese.model)
    if not isinstance(embedding, SpeakerEmbedding):
        raise ConfigError("stages.siamese.model must be a speaker_embedding (e.g. speaker-embed-32x2-8k)")
    gate = {"name": "speaker_gate", "num_classes": stages.ks[0], "embedding_size": embedding.hidden_size,
            "num_layers": embedding.num_layers, "rnn_type": embedding.rnn_type, "n_fft": embedding.n_fft,
            "hop_length": embedding.hop_length, "sample_rate": embedding.sample_rate}
    check_shapes(recipe.data, gate, sizes)


def check_shapes(data: DataConfig, gate: dict[str, Any], sizes: list[tuple[str, dict[str, Any]]]) -> None:
    """Build each size's ensemble once, empty, so a gate / specialist mismatch fails now, not after hours."""
    for label, size in sizes:
        try:
            ensemble = SparseEnsemble(gate=gate, specialist=size)
        except ConfigError as err:
            raise ConfigError(f"size {label}: the gate and the specialists do not fit together: {err}") from None
        if ensemble.sample_rate != data.sample_rate:
            raise ConfigError(f"the ensemble runs at {ensemble.sample_rate} Hz but data.sample_rate is {data.sample_rate}")

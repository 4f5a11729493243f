"""Partitions: which specialist an utterance belongs to, and the data each stage trains on."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leanse.data.datamodule import Corpus, DataConfig, Mixers, PartitionConfig, build_mixers


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


def read_groups(path: Path | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(path.read_text()).items()} if path else {}


def full_mixers(data: DataConfig, corpus: Corpus, groups: Path | None) -> Mixers:
    """All the data, mixtures labelled with their speaker's group when there are groups."""
    mixers = build_mixers(dataclasses.replace(data, partition=None), corpus)
    mapping = read_groups(groups)
    if mapping:
        for mixer in (mixers.train, mixers.valid, mixers.test):
            mixer.groups = mapping
        mixers.valid_specs = [dataclasses.replace(s, group=mapping.get(s.speaker, "")) for s in mixers.valid_specs]
        mixers.test_specs = [dataclasses.replace(s, group=mapping.get(s.speaker, "")) for s in mixers.test_specs]
    return mixers


def partition_mixers(data: DataConfig, corpus: Corpus) -> Mixers:
    """A specialist's data. A partition without validation utterances (a speaker group no validation
    speaker falls in, a sex missing from a small hold-out) validates on the whole validation set
    rather than failing."""
    partition = data.partition
    if partition is not None and partition.by in ("gender", "group"):
        mapping = read_groups(Path(partition.groups)) if partition.by == "group" else {}
        label = (lambda u: u.gender) if partition.by == "gender" else (lambda u: mapping.get(u.speaker))
        if not any(label(u) == str(partition.value) for u in corpus.valid):
            whole = build_mixers(dataclasses.replace(data, partition=None), corpus)
            own = build_mixers(data, dataclasses.replace(corpus, valid=corpus.train))
            return Mixers(own.train, whole.valid, whole.test, whole.valid_specs, whole.test_specs)
    return build_mixers(data, corpus)

"""What ``leanse compare --data`` scores: a recipe's fixed test list or a folder of files.

A :class:`DataSource` is a fixed, ordered list of file ids and a way to load each one lazily (the
whole set never sits in memory), plus the labels tables are broken down by. Every mixture gets an
``snr_bin`` label (5-dB bins): from its ``snr`` label when the data says it, else measured from
the pair itself (``10 log10 |clean|^2 / |noisy - clean|^2``) and said so in the report.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from leanse.data.records import Mixture
from leanse.errors import ConfigError

#: Labels the tables and per-SNR plots break results down by, when the data carries them.
GROUP_BY = ("snr_bin", "noise_type")


@dataclass
class DataSource:
    description: dict[str, Any]  # what was scored: kind, path, file count (stored in results.json)
    ids: list[str]
    _load: Callable[[int], Mixture]
    has_clean: bool
    notes: list[str] = field(default_factory=list)
    discrete_snrs: bool = False  # a few fixed SNRs (a recipe's data.snrs): group by the value itself

    def load(self, index: int) -> Mixture:
        mixture = self._load(index)
        add_snr_bin(mixture, self.snr_label)
        return mixture

    def snr_label(self, snr: float) -> str:
        """The group of an SNR label: the value itself (``"-5"``) for a few fixed SNRs, else a 5-dB bin."""
        return f"{snr:g}" if self.discrete_snrs else snr_bin(snr)

    def relabel(self, row: dict[str, Any]) -> None:
        """Group a stored row of a few-fixed-SNR set by its ``snr`` value (logs written by an older
        leanse that binned them agree)."""
        snr = row.get("snr")
        if self.discrete_snrs and isinstance(snr, (int, float)) and not math.isnan(float(snr)):
            row["snr_bin"] = self.snr_label(float(snr))

    def __len__(self) -> int:
        return len(self.ids)


def snr_bin(snr: float) -> str:
    """5-dB bins ``"-5..0"``, ``"0..5"`` ...; like the dev set's, 10 dB falls in ``"5..10"``."""
    low = 5 if snr == 10 else 5 * math.floor(snr / 5)  # the dev set's top bin is closed: [5, 10]
    return f"{low}..{low + 5}"


def bin_low(label: str) -> float:
    """The lower edge of a bin label, for ordering (``"-5..0"`` -> -5); other labels sort last."""
    try:
        return float(label.split("..")[0])
    except (ValueError, AttributeError):
        return math.inf


MEASURED_NOTE = "SNR bins of files without an SNR label are measured from the pair (noise = noisy - clean)."


def add_snr_bin(mixture: Mixture, label: Callable[[float], str] = snr_bin) -> None:
    meta = mixture.meta
    if meta.get("snr_bin"):
        return
    snr = meta.get("snr")
    if isinstance(snr, (int, float)) and not math.isnan(float(snr)):
        meta["snr_bin"] = label(float(snr))
    elif mixture.clean is not None:
        noise = mixture.noisy.astype(np.float64) - mixture.clean
        measured = 10 * math.log10((np.sum(mixture.clean.astype(np.float64) ** 2) + 1e-12) / (np.sum(noise**2) + 1e-12))
        meta["snr_measured"] = round(measured, 2)
        meta["snr_bin"] = snr_bin(measured)


def open_data(data: str | os.PathLike, sample_rate: int, limit: int | None = None) -> DataSource:
    """A recipe YAML (its ``data:`` section's fixed test list) or a folder (:mod:`leanse.data.paired`)."""
    path = Path(data)
    if path.is_file():
        return _recipe_source(path, sample_rate, limit)
    if path.is_dir():
        return _folder_source(path, sample_rate, limit)
    raise ConfigError(f"--data {data}: no such recipe file or folder")


def _recipe_source(path: Path, sample_rate: int, limit: int | None) -> DataSource:
    from leanse.config import from_dict, load_yaml
    from leanse.data.datamodule import DataConfig, build_mixers

    recipe = load_yaml(path)
    data = from_dict(DataConfig, recipe.get("data", recipe), "data")
    if data.sample_rate != sample_rate:
        raise ConfigError(f"--data {path}: the recipe's data is at {data.sample_rate} Hz, the models run at {sample_rate} Hz")
    mixers = build_mixers(data)
    specs = mixers.test_specs[:limit]
    return DataSource({"kind": "recipe test list", "path": str(path), "corpus": data.corpus, "files": len(specs)},
                      [s.id for s in specs], lambda i: mixers.test.render(specs[i]), has_clean=True,
                      discrete_snrs=data.snrs is not None and data.corpus != "paired")


def _folder_source(path: Path, sample_rate: int, limit: int | None) -> DataSource:
    from leanse.data.paired import load_pair, read_paired, recognise_layout

    layout = recognise_layout(path)
    pairs = read_paired(path, "test")[:limit]
    has_clean = pairs[0].clean is not None
    notes = [] if has_clean else ["No clean references: only DNSMOS and cost are reported."]
    snrs = {p.labels["snr"] for p in pairs if isinstance(p.labels.get("snr"), float)}
    return DataSource({"kind": f"folder ({layout})", "path": str(path.resolve()), "files": len(pairs)},
                      [p.id for p in pairs], lambda i: load_pair(pairs[i], sample_rate), has_clean, notes,
                      discrete_snrs=0 < len(snrs) <= 6 and not any(p.labels.get("snr_bin") for p in pairs))

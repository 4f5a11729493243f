"""The fixed real-speech dev set: every bundled model and every peer is scored on these files.

Held-out voices (the ``dev`` split of ``leanse data real``: ktuberling and klettres speakers, none
of whom is in training) in held-out noise (``noise/dev-*``: tuxpaint effects, fillets music,
dev-voice babble, procedural noise of another seed), 4-s mixtures at SNR uniform in [-5, 10] dB,
a third of them reverberant (T60 0.2-0.8 s; the reference is then the reverberant speech, since
the models denoise and do not dereverberate).

The set is written as files (``dev/noisy/ID.wav``, ``dev/clean/ID.wav``, ``dev/list.csv``) so that
any system, leanse's or a peer's, reads exactly the same samples, and is tuned on, never tested
on: real-speech test recordings are kept elsewhere for an independent check.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from leanse.audio import save_audio
from leanse.data import corpora
from leanse.data.augment import AugmentOptions
from leanse.data.mixing import Mixer, MixingOptions, example_rng, write_csv_atomic
from leanse.data.records import Mixture
from leanse.errors import CorpusError

DEV_SECONDS = 4.0
DEV_SNR_RANGE = [-5.0, 10.0]
DEV_AUGMENT = AugmentOptions(reverb=0.33, t60=[0.2, 0.8], rir_pool=24)
DEV_SEED = 2026
LIST_FIELDS = ["id", "speaker", "gender", "noise", "noise_type", "snr", "reverb", "snr_bin"]


def snr_bin(snr: float) -> str:
    """The SNR bins the tables break results into: [-5, 0), [0, 5), [5, 10]."""
    low = -5 if snr < 0 else (0 if snr < 5 else 5)
    return f"{low}..{low + 5}"


def write_dev_set(root: str | os.PathLike, count: int = 300) -> dict:
    """Render ``count`` fixed mixtures from ``root``'s dev voices and dev noises into ``root/dev``."""
    root = Path(root)
    speech = [u for u in corpora.read_manifest(root / "manifest.csv") if u.split == "dev"]
    categories = sorted(p.name for p in (root / "noise").iterdir() if p.is_dir() and p.name.startswith("dev-"))
    if not speech or not categories:
        raise CorpusError(f"{root}: the dev set needs dev voices in manifest.csv and noise/dev-* folders")
    options = MixingOptions(sample_rate=16000, segment_seconds=DEV_SECONDS, snr_range=DEV_SNR_RANGE,
                            augment=DEV_AUGMENT)
    # One mixer per noise type, taken in turn: every type gets the same share of the set, however
    # many files it has (137 short effects would otherwise outnumber 9 long music tracks).
    mixers = [Mixer(speech, corpora.read_musan_noise(root, [c]), options, cache=False) for c in categories]
    rows = []
    for index in range(count):
        mixer = mixers[index % len(mixers)]
        spec = mixer.draw(example_rng(DEV_SEED, "dev", index), f"dev-{index:04d}")
        mixture = mixer.render(spec)
        peak = max(np.abs(mixture.noisy).max(), np.abs(mixture.clean).max())
        scale = 0.9 / peak if peak > 0.9 else 1.0  # 16-bit files must not clip
        save_audio(root / "dev" / "noisy" / f"{spec.id}.wav", mixture.noisy * scale, 16000)
        save_audio(root / "dev" / "clean" / f"{spec.id}.wav", mixture.clean * scale, 16000)
        rows.append(dict(
            id=spec.id, speaker=spec.speaker, gender=spec.gender, noise=Path(spec.noise).name,
            noise_type=Path(spec.noise).parent.name.removeprefix("dev-"), snr=spec.snr,
            reverb=int("rir" in mixture.meta), snr_bin=snr_bin(spec.snr),
        ))
    write_csv_atomic(root / "dev" / "list.csv", LIST_FIELDS, rows)
    return dict(
        mixtures=count, seconds=DEV_SECONDS, speakers=len({r["speaker"] for r in rows}),
        noise_files=len({r["noise"] for r in rows}), reverberant=sum(r["reverb"] for r in rows),
        by_noise_type={t: sum(r["noise_type"] == t for r in rows) for t in sorted({r["noise_type"] for r in rows})},
    )


def read_dev_list(folder: str | os.PathLike) -> list[dict]:
    """Rows of ``dev/list.csv`` (or any paired folder's list) with ``snr`` as a float."""
    path = Path(folder) / "list.csv"
    if not path.is_file():
        raise CorpusError(f"{folder}: no list.csv; build the set with 'leanse data real --out DIR'")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["snr"] = float(row["snr"])
    return rows


def paired_mixtures(folder: str | os.PathLike, sample_rate: int = 16000, limit: int | None = None) -> Iterator[Mixture]:
    """The files of a paired folder (``noisy/ID.wav`` + ``clean/ID.wav``, optional ``list.csv``
    with per-file labels) as :class:`Mixture` records at ``sample_rate``, in sorted order
    (:mod:`leanse.data.paired` reads them)."""
    from leanse.data.paired import iter_paired

    folder = Path(folder)
    if not (folder / "noisy").is_dir() or not (folder / "clean").is_dir():
        raise CorpusError(f"{folder}: a paired folder needs noisy/ and clean/ with the same file names")
    yield from iter_paired(folder, sample_rate, limit=limit)

"""From a recipe's ``data:`` section to train / validation / test mixtures.

:class:`DataConfig` names the corpus and the mixing; :func:`build_mixers` reads the corpus
(demo, LibriSpeech + MUSAN, or a CSV manifest) and applies the partition a specialist trains on
(an SNR, a gender, or a speaker group); :class:`MixtureDataset` serves mixtures to the one
training engine. Training mixtures are drawn fresh every epoch; validation and test mixtures are
fixed, seeded lists, drawn from the *whole* validation / test set (not the partition), so every
model -- specialist, generalist or ensemble -- is scored on exactly the same mixtures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from leanse.data import corpora
from leanse.data.augment import AugmentOptions
from leanse.data.mixing import Mixer, MixingOptions, MixtureSpec, example_rng
from leanse.data.records import Mixture, NoiseRecording, Utterance
from leanse.errors import ConfigError, CorpusError

GENDER_CLASSES = {"M": 0, "F": 1}


@dataclass
class PartitionConfig:
    """The slice of the training data a specialist sees (000 Sec. 2.3, 001 Sec. 3.2).

    ``by: snr`` keeps mixtures at SNR ``value`` only; ``by: gender`` keeps speakers of sex
    ``value`` (M/F); ``by: group`` keeps speakers whose group in the JSON ``groups`` file
    (speaker -> group) is ``value``.
    """

    by: str = "snr"
    value: Any = None
    groups: str | None = None


@dataclass
class DataConfig:
    corpus: str = "demo"  # demo | librispeech | manifest | paired (leanse.data.paired: VoiceBank-DEMAND, clean/ + noisy/)
    root: str = "data/demo"  # demo corpus folder (built if absent), LibriSpeech root or paired corpus root
    noise_root: str | None = None  # MUSAN root; defaults to ``root``
    manifest: str | list[str] | None = None  # CSV manifest(s) for corpus: manifest (path, speaker[, gender, split])
    test_split: str = "test"  # manifest rows of this split are the test list ("dev": the real-speech dev set)
    train_subsets: list[str] = field(default_factory=lambda: ["train-clean-100"])
    valid_subsets: list[str] = field(default_factory=lambda: ["dev-clean"])
    test_subsets: list[str] = field(default_factory=lambda: ["test-clean"])
    valid_holdout: float | None = None  # hold out this fraction of training utterances instead (000)
    train_noise: list[str] = field(default_factory=lambda: ["free-sound"])
    test_noise: list[str] = field(default_factory=lambda: ["sound-bible"])
    noise_valid_fraction: float = 0.2  # of the training noises, held out for validation (003)
    sample_rate: int = 16000
    segment_seconds: float | None = 1.0
    eval_segment_seconds: float | None = None  # None: whole utterances for validation / test
    snrs: list[float] | None = None
    snr_range: list[float] | None = None
    target_rms: float = 0.05
    mixture_norm: str | None = None
    examples_per_epoch: int = 2000
    valid_size: int = 200
    test_size: int = 200
    batch_size: int = 16
    num_workers: int = 0
    seed: int = 0
    partition: PartitionConfig | None = None
    demo: dict[str, Any] = field(default_factory=dict)  # options of `leanse data demo`
    augment: AugmentOptions | None = None  # training-time augmentation (leanse.data.augment)

    def mixing_options(self, partition: PartitionConfig | None = None, augment: bool = False) -> MixingOptions:
        snrs = self.snrs
        if partition is not None and partition.by == "snr":
            if self.snrs is None or partition.value not in self.snrs:
                raise ConfigError(
                    f"data.partition.value: SNR {partition.value} is not one of data.snrs {self.snrs}"
                )
            snrs = [partition.value]
        return MixingOptions(
            sample_rate=self.sample_rate,
            segment_seconds=self.segment_seconds,
            snrs=snrs,
            snr_range=self.snr_range,
            target_rms=self.target_rms,
            mixture_norm=self.mixture_norm,
            augment=self.augment if augment else None,
        )


@dataclass
class Corpus:
    """The records of one run: speech and noise for each split."""

    train: list[Utterance]
    valid: list[Utterance]
    test: list[Utterance]
    train_noise: list[NoiseRecording]
    valid_noise: list[NoiseRecording]
    test_noise: list[NoiseRecording]


def ensure_demo_corpus(config: DataConfig) -> Path:
    """Build the embedded demo corpus at ``config.root`` if it is not there yet."""
    from leanse.data.demo import write_demo_corpus

    root = Path(config.root)
    write_demo_corpus(root, **config.demo)
    return root


def read_corpus(config: DataConfig) -> Corpus:
    """Read speech and noise records for the configured corpus."""
    if config.corpus == "demo":
        ensure_demo_corpus(config)
    if config.corpus in ("demo", "librispeech"):
        train = corpora.read_librispeech(config.root, config.train_subsets)
        valid = [] if config.valid_holdout else corpora.read_librispeech(config.root, config.valid_subsets)
        test = corpora.read_librispeech(config.root, config.test_subsets)
    elif config.corpus == "manifest":
        if not config.manifest:
            raise ConfigError("data.manifest: corpus 'manifest' needs the path of a CSV manifest")
        manifests = [config.manifest] if isinstance(config.manifest, str) else config.manifest
        everything = [u for manifest in manifests for u in corpora.read_manifest(manifest)]
        test = [u for u in everything if u.split == config.test_split]
        train = [u for u in everything if u.split in (None, "train")]
        valid = [u for u in everything if u.split in ("valid", "dev") and u.split != config.test_split]
        if not test:
            raise CorpusError(
                f"{', '.join(manifests)}: no rows with split {config.test_split!r}; add a split column "
                "(train/valid/test) or set data.test_split"
            )
    elif config.corpus == "paired":
        raise ConfigError("data.corpus: paired corpora are not mixed, so they have no speech/noise records; "
                          "they serve kind: single recipes, evaluate and compare")
    else:
        raise ConfigError(f"data.corpus: expected demo, librispeech, manifest or paired, got {config.corpus!r}")
    if config.valid_holdout or not valid:
        train, valid = _hold_out(train, config.valid_holdout or 0.05, config.seed)
    noise_root = config.noise_root or config.root
    noise = corpora.read_musan_noise(noise_root, config.train_noise)
    train_noise, valid_noise = _hold_out(noise, config.noise_valid_fraction, config.seed)
    test_noise = corpora.read_musan_noise(noise_root, config.test_noise)
    return Corpus(train, valid, test, train_noise, valid_noise, test_noise)


def _hold_out(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Split off a seeded ``fraction`` (at least one item) for validation."""
    if len(items) < 2:
        raise CorpusError(f"need at least 2 files to hold some out for validation, found {len(items)}")
    order = example_rng(seed, "holdout", len(items)).permutation(len(items))
    count = min(max(1, int(round(fraction * len(items)))), len(items) - 1)
    held = set(order[:count].tolist())
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def partition_utterances(
    utterances: list[Utterance], partition: PartitionConfig | None
) -> tuple[list[Utterance], dict[str, str]]:
    """Keep the utterances of a gender or speaker-group partition; return them and the groups."""
    groups: dict[str, str] = {}
    if partition is not None and partition.groups:
        groups = {str(k): str(v) for k, v in json.loads(Path(partition.groups).read_text()).items()}
    if partition is None or partition.by == "snr":
        return utterances, groups
    if partition.by == "gender":
        if partition.value not in GENDER_CLASSES:
            raise ConfigError(f"data.partition.value: gender must be M or F, got {partition.value!r}")
        if not any(u.gender for u in utterances):
            raise CorpusError("the corpus has no gender labels (SPEAKERS.TXT sex or a manifest 'gender' column)")
        kept = [u for u in utterances if u.gender == partition.value]
    elif partition.by == "group":
        if not groups:
            raise ConfigError("data.partition.groups: a group partition needs the speaker -> group JSON file")
        kept = [u for u in utterances if groups.get(u.speaker) == str(partition.value)]
    else:
        raise ConfigError(f"data.partition.by: expected snr, gender or group, got {partition.by!r}")
    if not kept:
        raise CorpusError(f"the partition {partition.by}={partition.value!r} has no utterances")
    return kept, groups


@dataclass
class Mixers:
    train: Mixer
    valid: Mixer
    test: Mixer
    valid_specs: list[MixtureSpec]
    test_specs: list[MixtureSpec]


def build_mixers(config: DataConfig, corpus: Corpus | None = None) -> Mixers:
    """Mixers for the three splits, with fixed validation and test lists."""
    if config.corpus == "paired":  # recorded pairs, served through the mixer interface
        from leanse.data.paired import build_paired_mixers

        return build_paired_mixers(config)
    corpus = corpus or read_corpus(config)
    train_speech, groups = partition_utterances(corpus.train, config.partition)
    valid_speech, _ = partition_utterances(corpus.valid, config.partition)
    train = Mixer(train_speech, corpus.train_noise, config.mixing_options(config.partition, augment=True), groups)
    valid = Mixer(valid_speech, corpus.valid_noise, config.mixing_options(config.partition), groups)
    test = Mixer(corpus.test, corpus.test_noise, config.mixing_options(None), groups)
    seconds = config.eval_segment_seconds
    return Mixers(
        train,
        valid,
        test,
        valid.fixed_specs(config.valid_size, config.seed, "valid", seconds),
        test.fixed_specs(config.test_size, config.seed, "test", seconds),
    )


class MixtureDataset(Dataset):
    """Serves mixtures as tensors to the trainer.

    With ``specs`` it renders that fixed list; without, item ``i`` of epoch ``e`` is a fresh draw
    seeded by ``(seed, e, i)``, so each epoch sees new mixtures and a distributed sampler gives
    each rank different ones.
    """

    def __init__(self, mixer: Mixer, size: int | None = None, seed: int = 0, specs: list[MixtureSpec] | None = None) -> None:
        self.mixer = mixer
        self.specs = specs
        self.size = len(specs) if specs is not None else int(size or 0)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def mixture(self, index: int) -> Mixture:
        if self.specs is not None:
            return self.mixer.render(self.specs[index])
        spec = self.mixer.draw(example_rng(self.seed, "train", self.epoch, index), f"train-{self.epoch}-{index}")
        return self.mixer.render(spec)

    def __getitem__(self, index: int) -> dict[str, Any]:
        mixture = self.mixture(index)
        meta = mixture.meta
        return {
            "noisy": torch.from_numpy(mixture.noisy),
            "clean": torch.from_numpy(mixture.clean),
            "snr": torch.tensor(meta["snr"], dtype=torch.float32),
            "snr_class": torch.tensor(meta["snr_class"]),
            "gender_class": torch.tensor(GENDER_CLASSES.get(meta.get("gender", ""), -1)),
            "id": mixture.id,
            "speaker": meta.get("speaker", ""),
            "group": meta.get("group", ""),
        }


def fixed_mixtures(mixer: Mixer, specs: list[MixtureSpec]) -> list[Mixture]:
    """Render a fixed list (what ``evaluate`` scores)."""
    return [mixer.render(spec) for spec in specs]


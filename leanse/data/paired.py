"""Paired corpora: recorded or pre-mixed ``noisy`` files with their ``clean`` references.

Most published denoisers report on such corpora, so this reader lets a leanse model sit in the
same table as the papers (``data.corpus: paired`` for training and ``evaluate``; ``leanse compare
--data DIR``). Layouts, recognised by their folder names:

* **VoiceBank-DEMAND** (Valentini-Botinhao et al. 2016): ``clean_trainset_28spk_wav/`` +
  ``noisy_trainset_28spk_wav/`` (and/or the ``56spk`` pair) for training, ``clean_testset_wav/`` +
  ``noisy_testset_wav/`` for testing; file names ``pSPK_UTT.wav`` give the speaker.
* **DNS-Challenge style**: ``clean/`` + ``noisy/``. A noisy file is paired with the clean file of
  the same name, or else with the clean file of the same ``fileid_N`` (DNS's own naming:
  ``noisy/..._snr5_fileid_12.wav`` <-> ``clean/clean_fileid_12.wav``); ``snrN`` in a noisy name is
  read as its SNR label. A ``list.csv`` beside the folders (``id`` column = file stem, as
  ``leanse data real`` writes for its dev set) adds per-file labels (``snr``, ``noise_type``, ...).
  Splits: ``ROOT/{train,valid,test}/{clean,noisy}``, or ``ROOT/{clean,noisy}`` as a test set.

No mixing happens: :class:`PairedMixer` serves the pairs through the same ``draw`` / ``render`` /
``fixed_specs`` interface as :class:`~leanse.data.mixing.Mixer`, so the training engine, the fixed
test lists (``test_list.csv``) and ``evaluate`` work unchanged. A spec's ``clean`` / ``noise``
fields hold the clean and the noisy file, ``clean_offset`` = ``noise_offset`` the segment start.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf

from leanse.data.corpora import AUDIO_SUFFIXES
from leanse.data.mixing import EPS, AudioReader, MixtureSpec, example_rng, fit_length
from leanse.data.records import Mixture
from leanse.errors import ConfigError, CorpusError

#: VoiceBank-DEMAND folder pairs (clean, noisy) by split, in the corpus's own names.
VOICEBANK_DEMAND = {
    "train": [("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
              ("clean_trainset_56spk_wav", "noisy_trainset_56spk_wav")],
    "test": [("clean_testset_wav", "noisy_testset_wav")],
}
SPLIT_FOLDERS = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}
_FILEID = re.compile(r"fileid_(\d+)")
_SNR = re.compile(r"snr(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_VCTK_SPEAKER = re.compile(r"^(p\d+)_")


@dataclass(frozen=True)
class PairedFile:
    """One noisy file and its clean reference (``clean`` is ``None`` when the corpus has none)."""

    id: str
    noisy: str
    clean: str | None
    speaker: str = ""
    labels: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def recognise_layout(root: str | os.PathLike) -> str:
    """``"voicebank-demand"``, ``"dns-splits"``, ``"pairs"`` (clean/ + noisy/), ``"noisy-only"``.

    ``root`` may also be a ``noisy*`` folder itself, with its ``clean*`` sibling or without one.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: no such folder")
    if any((root / noisy).is_dir() for pairs in VOICEBANK_DEMAND.values() for _, noisy in pairs):
        return "voicebank-demand"
    if any(_pair_dir(root / name) for names in SPLIT_FOLDERS.values() for name in names):
        return "dns-splits"
    if (root / "noisy").is_dir():
        return "pairs" if (root / "clean").is_dir() else "noisy-only"
    if _clean_sibling(root) is not None:
        return "pairs"
    if any(p.suffix.lower() in AUDIO_SUFFIXES for p in root.iterdir()):
        return "noisy-only"
    raise CorpusError(
        f"{root}: not a paired corpus; expected VoiceBank-DEMAND folders (clean_testset_wav + "
        "noisy_testset_wav, ...), clean/ + noisy/, or a folder of noisy audio files"
    )


def is_paired_corpus(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a paired corpus with clean references (``leanse evaluate --data DIR``)."""
    try:
        return recognise_layout(root) in ("voicebank-demand", "dns-splits", "pairs")
    except CorpusError:
        return False


def read_paired(root: str | os.PathLike, split: str = "test") -> list[PairedFile]:
    """The pairs of one split (``train``, ``valid``, ``test``) of a paired corpus, sorted by id.

    A split the corpus does not have raises :class:`CorpusError` (``valid`` is then held out of
    ``train`` by the caller). Clean references are required except for a ``noisy-only`` folder.
    """
    root = Path(root)
    layout = recognise_layout(root)
    if split not in SPLIT_FOLDERS:
        raise ConfigError(f"paired split must be train, valid or test, not {split!r}")
    if layout == "voicebank-demand":
        pairs = [(root / c, root / n) for c, n in VOICEBANK_DEMAND.get(split, []) if (root / n).is_dir()]
        if not pairs:
            wanted = " or ".join(n for _, n in VOICEBANK_DEMAND.get(split, [])) or "(none: hold it out of train)"
            raise CorpusError(f"{root}: VoiceBank-DEMAND layout without a {split} set ({wanted})")
        files = []
        for clean_dir, noisy_dir in pairs:
            if not clean_dir.is_dir():
                raise CorpusError(f"{noisy_dir}: no {clean_dir.name}/ beside it for the references")
            files += _read_pair_folder(noisy_dir, clean_dir)
        return sorted(files, key=lambda f: f.id)
    if layout == "dns-splits":
        for name in SPLIT_FOLDERS[split]:
            if _pair_dir(root / name):
                return _read_pair_folder(root / name / "noisy", root / name / "clean", root / name)
        raise CorpusError(f"{root}: no {split}/clean + {split}/noisy folders")
    if split != "test":
        raise CorpusError(
            f"{root}: one clean/ + noisy/ folder is a test set; for training use train/ and test/ "
            "subfolders (each with clean/ + noisy/) or the VoiceBank-DEMAND layout"
        )
    if layout == "noisy-only":
        noisy_dir = root / "noisy" if (root / "noisy").is_dir() else root
        return _read_pair_folder(noisy_dir, None, root)
    if (root / "noisy").is_dir():
        return _read_pair_folder(root / "noisy", root / "clean", root)
    return _read_pair_folder(root, _clean_sibling(root), root.parent)


def _pair_dir(folder: Path) -> bool:
    return (folder / "noisy").is_dir() and (folder / "clean").is_dir()


def _clean_sibling(noisy_dir: Path) -> Path | None:
    """``.../noisy_testset_wav`` -> ``.../clean_testset_wav``; ``.../noisy`` -> ``.../clean``."""
    name = noisy_dir.name
    if "noisy" not in name:
        return None
    sibling = noisy_dir.with_name(name.replace("noisy", "clean", 1))
    return sibling if sibling.is_dir() else None


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _read_pair_folder(noisy_dir: Path, clean_dir: Path | None, label_dir: Path | None = None) -> list[PairedFile]:
    noisy_files = _audio_files(noisy_dir)
    if not noisy_files:
        raise CorpusError(f"{noisy_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    labels = _read_labels(label_dir / "list.csv") if label_dir is not None else {}
    by_name: dict[str, Path] = {}
    by_fileid: dict[str, Path] = {}
    if clean_dir is not None:
        for path in _audio_files(clean_dir):
            by_name[path.stem] = path
            fileid = _FILEID.search(path.stem)
            if fileid:
                by_fileid[fileid.group(1)] = path
    files = []
    for path in noisy_files:
        clean = None
        if clean_dir is not None:
            fileid = _FILEID.search(path.stem)
            clean = by_name.get(path.stem) or (by_fileid.get(fileid.group(1)) if fileid else None)
            if clean is None:
                raise CorpusError(f"{path}: no clean reference of the same name (or fileid) in {clean_dir}")
        row = dict(labels.get(path.stem, {}))
        row.pop("id", None)
        snr = _SNR.search(path.stem)
        if snr and "snr" not in row:
            row["snr"] = float(snr.group(1))
        speaker = _VCTK_SPEAKER.match(path.stem)
        files.append(PairedFile(path.stem, str(path), None if clean is None else str(clean),
                                row.get("speaker") or (speaker.group(1) if speaker else ""), row))
    return files


def _read_labels(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    import csv

    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if "id" not in (reader.fieldnames or []):
            raise CorpusError(f"{path}: a label list needs an 'id' column (the file stem)")
        rows = {}
        for row in reader:
            for key, value in row.items():
                try:  # numbers stay numbers (snr 2.5 -> 2.5), labels stay text
                    row[key] = float(value) if key != "id" and value not in ("", None) else value
                except ValueError:
                    pass
            rows[row["id"]] = row
    return rows


def load_pair(pair: PairedFile, sample_rate: int, offset: float = 0.0, seconds: float | None = None) -> Mixture:
    """Read a pair (or a segment of it) as a :class:`Mixture` at ``sample_rate``; ``clean`` is
    ``None`` for a noisy-only file. Both files are read from the same offset, so they stay aligned."""
    from leanse.audio import load_audio

    if offset == 0.0 and seconds is None:  # whole files, with load_audio's checks
        noisy, _ = load_audio(pair.noisy, sample_rate)
        clean = None if pair.clean is None else load_audio(pair.clean, sample_rate, check=False)[0]
    else:
        noisy = _segment(pair.noisy, sample_rate, offset, seconds)
        clean = None if pair.clean is None else _segment(pair.clean, sample_rate, offset, seconds)
    if clean is not None and len(clean) != len(noisy):
        raise CorpusError(f"{pair.noisy}: {len(noisy)} samples but its reference {pair.clean} has {len(clean)}")
    meta = {"speaker": pair.speaker, **pair.labels}
    return Mixture(pair.id, noisy.astype(np.float32), None if clean is None else clean.astype(np.float32),
                   sample_rate, meta)


def _segment(path: str, sample_rate: int, offset: float, seconds: float | None) -> np.ndarray:
    from leanse.audio import resample

    rate = sf.info(path).samplerate
    start = int(round(offset * rate))
    frames = -1 if seconds is None else int(round(seconds * rate))
    wav, _ = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    wav = resample(wav.mean(axis=1), rate, sample_rate)
    return wav if seconds is None else fit_length(wav, int(round(seconds * sample_rate)))


def iter_paired(root: str | os.PathLike, sample_rate: int = 16000, split: str = "test",
                limit: int | None = None) -> Iterator[Mixture]:
    """The mixtures of a paired folder in sorted order (what ``compare --data DIR`` scores)."""
    for pair in read_paired(root, split)[:limit]:
        yield load_pair(pair, sample_rate)


# --------------------------------------------------------------------------------------------
# Training and fixed test lists: the Mixer interface over pairs
# --------------------------------------------------------------------------------------------


class PairedMixer:
    """Serves a paired corpus through :class:`~leanse.data.mixing.Mixer`'s interface.

    ``draw`` picks a random pair and a random ``seconds``-long segment (the same segment of both
    files); ``render`` reads it. No level normalisation (the corpus's own levels are the task),
    except ``mixture_norm`` scaling of both signals by the same factor, as the mixer does.
    """

    def __init__(self, pairs: list[PairedFile], sample_rate: int, segment_seconds: float | None,
                 mixture_norm: str | None = None) -> None:
        if not pairs:
            raise CorpusError("no paired files for this split")
        missing = [p.noisy for p in pairs if p.clean is None]
        if missing:
            raise CorpusError(f"{missing[0]}: training and evaluate need clean references beside noisy/")
        self.pairs = pairs
        self.sample_rate = int(sample_rate)
        self.segment_seconds = segment_seconds
        self.mixture_norm = mixture_norm
        self._durations: dict[str, float] = {}
        self._by_noisy = {p.noisy: p for p in pairs}
        self.reader = AudioReader(sample_rate, cache=False)

    def _duration(self, path: str) -> float:
        if path not in self._durations:
            info = sf.info(path)
            self._durations[path] = info.frames / info.samplerate
        return self._durations[path]

    def draw(self, rng: np.random.Generator, id: str, seconds: float | None = ...) -> MixtureSpec:
        seconds = self.segment_seconds if seconds is ... else seconds
        pair = self.pairs[rng.integers(len(self.pairs))]
        return self._spec(pair, id, seconds, rng)

    def _spec(self, pair: PairedFile, id: str, seconds: float | None, rng: np.random.Generator | None) -> MixtureSpec:
        duration = self._duration(pair.noisy)
        if seconds is None:
            offset, seconds = 0.0, duration
        else:
            offset = float(rng.uniform(0, max(duration - seconds, 0.0))) if rng is not None else 0.0
        snr = pair.labels.get("snr")
        return MixtureSpec(id=id, clean=str(pair.clean), clean_offset=round(offset, 4), noise=pair.noisy,
                           noise_offset=round(offset, 4), snr=float("nan") if snr is None else float(snr),
                           seconds=round(seconds, 4), speaker=pair.speaker)

    def render(self, spec: MixtureSpec) -> Mixture:
        pair = self._by_noisy.get(spec.noise) or PairedFile(spec.id, spec.noise, spec.clean, spec.speaker)
        mixture = load_pair(pair, self.sample_rate, spec.clean_offset, spec.seconds)
        length = int(round(spec.seconds * self.sample_rate))
        noisy, clean = fit_length(mixture.noisy, length), fit_length(mixture.clean, length)
        if self.mixture_norm == "unit_rms":
            scale = 1.0 / (float(np.sqrt(np.mean(np.square(noisy, dtype=np.float64)))) + EPS)
            noisy, clean = noisy * scale, clean * scale
        elif self.mixture_norm == "standardize":
            mean, std = noisy.mean(), noisy.std() + EPS
            noisy, clean = (noisy - mean) / std, clean / std
        # snr is NaN when the corpus does not say it: training batches need a number, and
        # evaluate leaves NaN labels out of its rows.
        meta = {**mixture.meta, "snr": spec.snr, "snr_class": -1, "clean": spec.clean, "noise": spec.noise,
                "seconds": spec.seconds}
        return Mixture(spec.id, noisy.astype(np.float32), clean.astype(np.float32), self.sample_rate, meta)

    def snr_class(self, snr: float) -> int:
        return -1

    def fixed_specs(self, count: int, seed: int, prefix: str, seconds: float | None = ...) -> list[MixtureSpec]:
        """A fixed list: every pair when ``count`` covers the split (the standard tables score the
        whole test set), else a seeded choice of ``count`` pairs; each from its start, whole files
        when ``seconds`` is ``None``. Ids are the file stems, so tables name the corpus's files."""
        seconds = None if seconds is ... else seconds
        chosen = range(len(self.pairs))
        if count < len(self.pairs):
            chosen = sorted(example_rng(seed, prefix, "paired").choice(len(self.pairs), count, replace=False))
        return [self._spec(self.pairs[i], self.pairs[i].id, seconds, None) for i in chosen]


class _NoTrainingSet:
    """Stands in for the training mixer of a test-only folder: drawing from it says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def draw(self, *args: Any, **kwargs: Any) -> MixtureSpec:
        raise CorpusError(f"{self.reason}: this paired corpus has no training set")


def build_paired_mixers(config: Any) -> Any:
    """:class:`~leanse.data.datamodule.Mixers` for ``data.corpus: paired`` (``data.root``).

    Validation: the corpus's ``valid``/``dev`` split, else ``data.valid_holdout`` (5 %) of the
    training pairs (VoiceBank-DEMAND has no validation set). A test-only folder serves
    ``evaluate`` and ``compare``; training on it raises :class:`CorpusError`.
    """
    from leanse.data.datamodule import Mixers, _hold_out

    if config.augment is not None:
        raise ConfigError("data.augment: augmentation belongs to on-the-fly mixing; a paired corpus is used as "
                          "recorded (remove data.augment or use another corpus)")
    if config.partition is not None:
        raise ConfigError("data.partition: paired corpora carry no partition labels; remove data.partition")
    root = Path(config.root)
    rate, norm, seconds = config.sample_rate, config.mixture_norm, config.eval_segment_seconds
    test = PairedMixer(read_paired(root, "test"), rate, seconds, norm)
    test_specs = test.fixed_specs(config.test_size, config.seed, "test", seconds)
    try:
        train_pairs = read_paired(root, "train")
    except CorpusError as err:
        return Mixers(_NoTrainingSet(str(err)), test, test, [], test_specs)
    try:
        valid_pairs = read_paired(root, "valid")
    except CorpusError:
        train_pairs, valid_pairs = _hold_out(train_pairs, config.valid_holdout or 0.05, config.seed)
    train = PairedMixer(train_pairs, rate, config.segment_seconds, norm)
    valid = PairedMixer(valid_pairs, rate, seconds, norm)
    return Mixers(train, valid, test, valid.fixed_specs(config.valid_size, config.seed, "valid", seconds), test_specs)

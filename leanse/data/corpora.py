"""Corpus readers. Every reader returns plain records (:mod:`leanse.data.records`), so the mixer,
partitions and reports never know which corpus they came from.

- LibriSpeech: ``ROOT/SPEAKERS.TXT`` and ``ROOT/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac``
  (``ROOT`` may also be the folder that contains ``LibriSpeech/``). ``SPEAKERS.TXT`` gives the sex
  column that labels the gender gate of paper 000.
- MUSAN noise: ``ROOT/noise/{free-sound,sound-bible}/*.wav`` (``ROOT`` may also contain ``musan/``).
- A generic folder of audio files, or a CSV manifest with columns ``path,speaker[,gender]``.

Durations come from the file headers (cheap); no audio is decoded here.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import soundfile as sf

from leanse.data.records import NoiseRecording, Utterance
from leanse.errors import CorpusError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
LIBRISPEECH_SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)


def _header(path: Path) -> tuple[float, int]:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise CorpusError(f"{path}: unreadable audio in the corpus ({err})") from None
    return info.frames / info.samplerate, info.samplerate


def librispeech_root(root: str | os.PathLike) -> Path:
    """The folder holding ``SPEAKERS.TXT``: ``root`` itself or ``root/LibriSpeech``."""
    root = Path(root)
    for candidate in (root, root / "LibriSpeech"):
        if (candidate / "SPEAKERS.TXT").is_file():
            return candidate
    raise CorpusError(
        f"{root}: not a LibriSpeech folder; expected SPEAKERS.TXT and subsets such as "
        f"train-clean-100/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac (in {root} or {root}/LibriSpeech)"
    )


def read_speakers_txt(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """``SPEAKERS.TXT`` -> {speaker id: (sex "M"/"F", subset)}; ';' lines are comments."""
    speakers = {}
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 3 or fields[1] not in ("M", "F"):
            raise CorpusError(
                f"{path}:{line_number}: expected 'ID | SEX | SUBSET | MINUTES | NAME' with SEX M or F"
            )
        speakers[fields[0]] = (fields[1], fields[2])
    return speakers


def read_librispeech(
    root: str | os.PathLike, subsets: tuple[str, ...] | list[str] = ("train-clean-100",)
) -> list[Utterance]:
    """All utterances of the given LibriSpeech subsets, sorted by path (deterministic)."""
    base = librispeech_root(root)
    sexes = read_speakers_txt(base / "SPEAKERS.TXT")
    utterances = []
    for subset in subsets:
        folder = base / subset
        if not folder.is_dir():
            found = sorted(p.name for p in base.iterdir() if p.is_dir())
            raise CorpusError(
                f"{base}: no subset folder {subset!r} (found: {', '.join(found) or 'none'})"
            )
        files = sorted(folder.glob("*/*/*.flac"))
        if not files:
            raise CorpusError(
                f"{folder}: no SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac files; is this LibriSpeech?"
            )
        for path in files:
            speaker = path.parent.parent.name
            if not path.stem.startswith(f"{speaker}-{path.parent.name}-"):
                raise CorpusError(f"{path}: name does not follow SPEAKER-CHAPTER-UTT.flac")
            sex = sexes.get(speaker, (None, None))[0]
            duration, rate = _header(path)
            utterances.append(
                Utterance(str(path), speaker, sex, duration, subset, rate)
            )
    return utterances


def musan_root(root: str | os.PathLike) -> Path:
    """The MUSAN folder holding ``noise/``: ``root`` itself or ``root/musan``."""
    root = Path(root)
    for candidate in (root, root / "musan"):
        if (candidate / "noise").is_dir():
            return candidate
    raise CorpusError(
        f"{root}: not a MUSAN folder; expected noise/free-sound/*.wav and noise/sound-bible/*.wav "
        f"(in {root} or {root}/musan)"
    )


def read_musan_noise(
    root: str | os.PathLike, categories: tuple[str, ...] | list[str] = ("free-sound",)
) -> list[NoiseRecording]:
    """Noise recordings of the given MUSAN categories (000/001: free-sound train, sound-bible test)."""
    base = musan_root(root) / "noise"
    noises = []
    for category in categories:
        files = sorted((base / category).glob("*.wav"))
        if not files:
            raise CorpusError(f"{base / category}: no .wav files (expected MUSAN noise/{category}/*.wav)")
        for path in files:
            duration, _ = _header(path)
            noises.append(NoiseRecording(str(path), category, duration))
    return noises


def read_audio_folder(root: str | os.PathLike) -> list[NoiseRecording]:
    """Every audio file below a folder (any noise collection, e.g. 100 Nonspeech Sounds)."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise CorpusError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    return [NoiseRecording(str(p), p.parent.name, _header(p)[0]) for p in files]


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """A CSV manifest with a header: ``path,speaker`` and optionally ``gender`` (M/F) and ``split``.

    Relative paths are taken relative to the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such manifest file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "path" not in columns or "speaker" not in columns:
            raise CorpusError(
                f"{path}: a manifest needs a header with 'path' and 'speaker' columns "
                f"(optional: gender, split); found {columns}"
            )
        utterances = []
        for row_number, row in enumerate(reader, start=2):
            audio = Path(row["path"])
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise CorpusError(f"{path}:{row_number}: audio file {audio} does not exist")
            gender = (row.get("gender") or "").strip().upper() or None
            if gender not in (None, "M", "F"):
                raise CorpusError(f"{path}:{row_number}: gender must be M, F or empty, not {gender!r}")
            duration, rate = _header(audio)
            utterances.append(
                Utterance(str(audio), row["speaker"], gender, duration, row.get("split") or None, rate)
            )
    if not utterances:
        raise CorpusError(f"{path}: the manifest lists no files")
    return utterances

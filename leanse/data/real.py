"""Real recorded speech and noise from Debian's main archive (``leanse data real``).

The demo corpus is espeak speech, and models trained only on it make real voices *less*
intelligible. Debian's main archive ships real, wideband human voice recordings inside game and
educational data packages (``shared/DATA.md``, "Real recordings"); this module turns them into a
corpus leanse can train on:

1. ``apt-get download`` fetches each pinned package version (no system install) and its sha256 is
   checked against the value pinned here, so a changed archive cannot silently change the data.
2. ``dpkg-deb -x`` extracts it; :data:`SOURCES` says which files of which package are speech or
   noise, for which split, and how the package's own structure names the speaker.
3. Every clip is decoded with soundfile, downmixed and resampled to 16 kHz. Clipped files and
   band-limited voices are dropped *by measurement* (:func:`clipped`, :func:`bandwidth_hz`);
   duplicate files (same bytes) are kept once.
4. Short clips of one speaker (single words, syllables) are joined, each at the same level, with
   short seeded pauses into utterances of at least :data:`UTTERANCE_SECONDS`, so a 4-s mixture
   holds speech rather than padding.
5. Gender is not in the packages: it is estimated from each speaker's median F0
   (:func:`median_f0`), and the manifest says so.

Output (``OUT``)::

    manifest.csv                       path,speaker,gender,split,source (paths relative to OUT)
    speech/{train,dev}/SPEAKER/*.flac  16 kHz mono
    noise/{train,dev}-{ambient,music,effects,babble,procedural}/*.wav   MUSAN layout (noise_root=OUT)
    dev/{noisy,clean}/*.wav, dev/list.csv   the fixed real-speech dev set (see leanse.data.devset)
    LICENSES.md, summary.json

The test split of real speech is deliberately absent: other recordings are reserved for an
independent check. Babble is made from voices of the same split only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from leanse.audio import resample
from leanse.data.mixing import example_rng, write_csv_atomic
from leanse.errors import CorpusError

SAMPLE_RATE = 16000
#: Short clips of one speaker are joined into utterances at least this long (seconds).
UTTERANCE_SECONDS = 4.0
#: ... and at most this long, so that training segments come from many places.
MAX_UTTERANCE_SECONDS = 8.0
#: Noise files are cut to at most this long (music tracks are minutes long).
MAX_NOISE_SECONDS = 60.0
#: A voice whose speech energy stops below this frequency is band-limited (telephone / 8 kHz sets).
MIN_BANDWIDTH_HZ = 5500.0
#: A speaker with more than this fraction of clipped files is dropped whole (klettres ``ml``).
MAX_CLIPPED_FRACTION = 0.2
#: Median F0 above which a voice is labelled female (adult male ~85-155 Hz, female ~165-255 Hz).
FEMALE_F0_HZ = 160.0
AUDIO_SUFFIXES = (".ogg", ".wav", ".opus", ".flac")


@dataclass(frozen=True)
class Package:
    """A pinned Debian package: name, version, sha256 of the .deb and licence of its audio."""

    name: str
    version: str
    sha256: str
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


PACKAGES = {
    p.name: p
    for p in [
        Package("fillets-ng-data-cs", "1.0.1-1.1",
                "3ecef99b9456f1c80c9625c6f2418642b52d58e7167a46bad7a412db17991b14", "GPL-2"),
        Package("fillets-ng-data-nl", "1.0.1-1.1", "afb4443fda9ab507dee578b75be857d121718a1cd6017a474f30e0eb13dc9d10", "GPL-2"),
        Package("fillets-ng-data", "1.0.1-1.1", "25de89afd8b1adf7bcace8290248a6a22c89cd42300317e69000e162c032cf84", "GPL-2"),
        Package("tuxpaint-stamps-default", "2022.06.04-1", "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34", "GPL-2"),
        Package("gcin-voice", "0~20170223-3", "6a0353f0294d06f7bd901bada3d5d9eec63b66c2ec029f92da3124d93d45de70", "voice 3: GPL-3 / LGPL-3; voice 5: CC-BY-3.0"),
        Package("ktuberling-data", "4:22.12.3-1", "fba44c875bfa31ea488dadd9263e87a4dcaea0bd47d28817f6c0dc6d2af970ed", "GPL-2+"),
        Package("klettres-data", "4:22.12.3-1", "1186d257a19e84230856baea0b0b1ded8be9195080fcdb2588970b5cd937f5a8", "GPL-2+"),
        Package("megaglest-data", "3.13.0-3", "ed4783d9fc78e201a548b266f7c30325eb16cfd58a20bf4597dd6e622f84a07e", "CC-BY-SA-3.0"),
        Package("hedgewars-data", "1.0.2-6", "722225903a72604403e6e0026e40e9a6953f47a74d94efc5f55504bc05bb4761", "GPL-2 (music)"),
    ]
}


@dataclass(frozen=True)
class Source:
    """Which files of a package are used, for what, and who speaks in them.

    ``speaker`` maps a file's path (relative to the package root) to a speaker id, or ``None`` to
    skip the file; for noise sources it is unused.
    """

    package: str
    kind: str  # "speech" | "noise"
    split: str  # "train" | "dev"
    pattern: str  # regular expression on the path relative to the package root
    speaker: Callable[[str], str | None] = lambda path: None
    category: str = ""  # noise category (folder under noise/)


def _fillets_speaker(language: str) -> Callable[[str], str | None]:
    """Fish Fillets dialogue files are ``LEVEL-CODE-LINE.ogg``: ``m`` is the small fish and ``v``
    the big fish throughout the game; other codes are level characters (one voice per level and
    code)."""

    def speaker(path: str) -> str | None:
        parts = Path(path).stem.split("-")
        if len(parts) < 3 or not parts[1].isalpha():
            return None
        level, code = Path(path).parts[-3], parts[1]
        if code in ("m", "v"):
            return f"fillets-{language}-{code}"
        return f"fillets-{language}-{level}-{code}"

    return speaker


def _tuxpaint_speaker(path: str) -> str | None:
    """Stamp descriptions are ``NAME_desc_LANG.ogg`` (``NAME_desc.ogg`` is English), one volunteer
    voice per language."""
    match = re.search(r"_desc(?:_([A-Za-z_]+))?\.ogg$", path)
    return f"tuxpaint-{match.group(1) or 'en'}" if match else None


def _language_folder_speaker(prefix: str, depth: int) -> Callable[[str], str | None]:
    """One voice per language folder (``ktuberling/sounds/LANG/``, ``klettres/LANG/``)."""

    def speaker(path: str) -> str | None:
        return f"{prefix}-{Path(path).parts[depth]}"

    return speaker


def _gcin_speaker(path: str) -> str | None:
    """gcin-voice holds one syllable per folder, spoken by voice ``3`` and voice ``5``."""
    return f"gcin-{Path(path).stem}"


SOURCES: list[Source] = [
    # speech, train
    Source("fillets-ng-data-cs", "speech", "train", r"sound/[^/]+/cs/[^/]+\.ogg$", _fillets_speaker("cs")),
    Source("fillets-ng-data-cs", "speech", "train", r"sound/share/[^/]+/cs/[^/]+\.ogg$", _fillets_speaker("cs")),
    Source("fillets-ng-data-nl", "speech", "train", r"sound/[^/]+/nl/[^/]+\.ogg$", _fillets_speaker("nl")),
    Source("fillets-ng-data-nl", "speech", "train", r"sound/share/[^/]+/nl/[^/]+\.ogg$", _fillets_speaker("nl")),
    Source("tuxpaint-stamps-default", "speech", "train", r"stamps/.+_desc(_[A-Za-z_]+)?\.ogg$", _tuxpaint_speaker),
    Source("gcin-voice", "speech", "train", r"gcin-voice/ogg/[^/]+/[35]\.ogg$", _gcin_speaker),
    # speech, dev (held-out voices)
    Source("ktuberling-data", "speech", "dev", r"ktuberling/sounds/[^/]+/[^/]+\.(ogg|wav|opus)$",
           _language_folder_speaker("ktuberling", 4)),
    Source("klettres-data", "speech", "dev", r"klettres/[^/]+/(alpha|syllab)/[^/]+\.ogg$",
           _language_folder_speaker("klettres", 3)),
    # noise, train
    Source("megaglest-data", "noise", "train", r"tilesets/[^/]+/sounds/[^/]+\.(ogg|wav)$", category="ambient"),
    Source("megaglest-data", "noise", "train", r"factions/[^/]+/music/[^/]+\.ogg$", category="music"),
    Source("hedgewars-data", "noise", "train", r"Data/Music/[^/]+\.ogg$", category="music"),
    # noise, dev (held-out recordings)
    Source("tuxpaint-stamps-default", "noise", "dev", r"stamps/.+/[a-z0-9-]+\.(ogg|wav)$", category="effects"),
    Source("fillets-ng-data", "noise", "dev", r"fillets-ng/music/[^/]+\.ogg$", category="music"),
]

#: Speakers left out by the DATA.md survey although they may pass the measurements (a clipped
#: volunteer set, and sets whose audio is narrowband behind a wideband header).
EXCLUDED_SPEAKERS = {"tuxpaint-es", "tuxpaint-ca", "tuxpaint-el", "tuxpaint-ml", "klettres-ml"}


# --------------------------------------------------------------------------------------------
# Fetching


def fetch_packages(dest: Path, names: Iterable[str], checksums: dict[str, str] | None = None) -> dict[str, Path]:
    """Download pinned .debs with ``apt-get download`` into ``dest`` (kept as a cache) and check
    their sha256. Returns {package: .deb path}."""
    dest.mkdir(parents=True, exist_ok=True)
    checksums = checksums if checksums is not None else {n: PACKAGES[n].sha256 for n in names}
    debs = {}
    for name in names:
        package = PACKAGES[name]
        existing = sorted(dest.glob(f"{name}_*.deb"))
        if not existing:
            if shutil.which("apt-get") is None:
                raise CorpusError(
                    "leanse data real needs apt-get (a Debian or Ubuntu machine) to fetch the packages; "
                    "or pass --debs DIR with the .deb files listed in leanse.data.real.PACKAGES"
                )
            result = subprocess.run(
                ["apt-get", "download", package.spec], cwd=dest, capture_output=True, text=True
            )
            existing = sorted(dest.glob(f"{name}_*.deb"))
            if result.returncode != 0 or not existing:
                raise CorpusError(
                    f"apt-get download {package.spec} failed ({result.stderr.strip().splitlines()[-1:] or 'no output'}); "
                    "run 'apt-get update' first, or pass --debs DIR with the .deb files"
                )
        deb = existing[-1]
        want = checksums.get(name)
        if want:
            got = sha256_of(deb)
            if got != want:
                raise CorpusError(
                    f"{deb}: sha256 {got[:16]}... is not the pinned {want[:16]}... of {package.spec}; "
                    "delete the file to fetch it again, or update PACKAGES if Debian changed the package"
                )
        debs[name] = deb
    return debs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` into ``dest`` (skipped when already extracted)."""
    done = dest / ".extracted"
    if done.is_file():
        return dest
    if shutil.which("dpkg-deb") is None:
        raise CorpusError("dpkg-deb is needed to unpack the .deb files (a Debian or Ubuntu machine)")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    done.write_text(deb.name)
    return dest


# --------------------------------------------------------------------------------------------
# Measurements


def read_clip(path: Path) -> np.ndarray | None:
    """Decode, downmix and resample one file to 16 kHz; ``None`` when it is unreadable or empty."""
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        return None
    if wav.size == 0 or not np.all(np.isfinite(wav)):
        return None
    return resample(wav.mean(axis=1), rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else wav.mean(axis=1)


def clipped(wav: np.ndarray, level: float = 0.99, run: int = 3, runs: int = 3) -> bool:
    """True when the clip holds at least ``runs`` runs of ``run`` or more consecutive samples at
    >= ``level`` of full scale: the flat tops that clipping leaves (a loud but clean clip has
    isolated peaks, not plateaus)."""
    at_top = np.abs(wav) >= level
    if at_top.sum() < run * runs:
        return False
    edges = np.diff(np.concatenate([[0], at_top.astype(np.int8), [0]]))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int((lengths >= run).sum()) >= runs


def long_term_spectrum(clips: list[np.ndarray], n_fft: int = 512) -> np.ndarray:
    """Mean power spectrum (``n_fft // 2 + 1`` bins at 16 kHz) of the loud frames of some clips."""
    window = np.hanning(n_fft).astype(np.float32)
    total = np.zeros(n_fft // 2 + 1)
    count = 0
    for wav in clips:
        if len(wav) < n_fft:
            continue
        frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[:: n_fft // 2]
        power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
        energy = power.sum(axis=1)
        loud = energy > 0.1 * energy.max()  # speech frames, not pauses
        total += power[loud].sum(axis=0)
        count += int(loud.sum())
    return total / max(count, 1)


def bandwidth_hz(spectrum: np.ndarray, floor_db: float = -60.0) -> float:
    """Highest frequency whose smoothed level is within ``floor_db`` of the spectrum's peak: where
    a low-passed or 8-kHz-sampled set's content stops. -60 dB, measured on the packages: 8-kHz
    sets (ktuberling es / it / pt ...) stop at 3.8-4.4 kHz, the smoothly low-passed Dutch fillets
    voices reach 6.5-7.6 kHz (at -50 dB their dark spectra would read 3.9-6.2 kHz and be lost)."""
    level = 10 * np.log10(np.convolve(spectrum, np.ones(5) / 5, mode="same") + 1e-20)
    above = np.flatnonzero(level > level.max() + floor_db)
    nyquist = SAMPLE_RATE / 2
    return float(above[-1] / (len(spectrum) - 1) * nyquist) if len(above) else 0.0


def median_f0(clips: list[np.ndarray], low: float = 60.0, high: float = 400.0) -> float:
    """Median fundamental frequency over the voiced frames of some clips, by normalised
    autocorrelation on 40-ms frames. Written here (a few lines) rather than pulling in a pitch
    tracker: it only has to tell typical male from female voices apart."""
    frame, hop = int(0.04 * SAMPLE_RATE), int(0.02 * SAMPLE_RATE)
    lags = np.arange(int(SAMPLE_RATE / high), int(SAMPLE_RATE / low) + 1)
    estimates = []
    for wav in clips:
        if len(wav) < frame:
            continue
        frames = np.lib.stride_tricks.sliding_window_view(wav, frame)[::hop]
        energy = (frames**2).sum(axis=1)
        for x in frames[energy > 0.2 * energy.max()]:
            x = x - x.mean()
            spectrum = np.fft.rfft(x, 2 * frame)
            ac = np.fft.irfft(np.abs(spectrum) ** 2)[: frame]
            if ac[0] <= 0:
                continue
            ac = ac / ac[0]
            best = lags[np.argmax(ac[lags])]
            if ac[best] > 0.5:  # clearly periodic: voiced
                estimates.append(SAMPLE_RATE / best)
    return float(np.median(estimates)) if estimates else float("nan")


def _level(wav: np.ndarray, target_rms: float = 0.05) -> np.ndarray:
    """Scale to ``target_rms`` measured over the louder half of the samples' envelope, so a word
    with a long pause is not boosted."""
    loud = np.abs(wav) > 0.1 * np.abs(wav).max()
    rms = np.sqrt(np.mean(wav[loud] ** 2)) if loud.any() else 0.0
    return wav * (target_rms / rms) if rms > 0 else wav


# --------------------------------------------------------------------------------------------
# Building


@dataclass
class SpeakerClips:
    split: str
    source: str
    clips: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (relative path, audio)


@dataclass
class BuildLog:
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> items

    def drop(self, reason: str, item: str) -> None:
        self.dropped.setdefault(reason, []).append(item)


def matching_files(root: Path, pattern: str) -> list[tuple[str, Path]]:
    regex = re.compile(pattern)
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if regex.search(relative):
            found.append((relative, path))
    return found


def collect_speech(trees: dict[str, Path], log: BuildLog) -> dict[str, SpeakerClips]:
    """Read every speech clip of the sources, dropping duplicates and clipped files."""
    speakers: dict[str, SpeakerClips] = {}
    seen: set[str] = set()
    for source in (s for s in SOURCES if s.kind == "speech" and s.package in trees):
        for relative, path in matching_files(trees[source.package], source.pattern):
            speaker = source.speaker(relative)
            if speaker is None:
                continue
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            if digest in seen:
                log.drop("duplicate file", relative)
                continue
            seen.add(digest)
            wav = read_clip(path)
            if wav is None or np.abs(wav).max() < 1e-4:
                log.drop("unreadable, empty or silent", relative)
                continue
            if clipped(wav):
                log.drop("clipped", relative)
                entry = speakers.setdefault(speaker, SpeakerClips(source.split, source.package))
                entry.clips.append((relative, None))  # counted for the speaker's clipped fraction
                continue
            speakers.setdefault(speaker, SpeakerClips(source.split, source.package)).clips.append((relative, wav))
    return speakers


def screen_speakers(speakers: dict[str, SpeakerClips], log: BuildLog) -> dict[str, dict]:
    """Drop excluded, mostly clipped and band-limited voices; estimate gender. Returns per-speaker
    measurements of the kept ones."""
    kept = {}
    for name in sorted(speakers):
        entry = speakers[name]
        clips = [wav for _, wav in entry.clips if wav is not None]
        fraction_clipped = 1 - len(clips) / len(entry.clips)
        if name in EXCLUDED_SPEAKERS:
            log.drop("excluded voice (DATA.md survey)", name)
            continue
        if fraction_clipped > MAX_CLIPPED_FRACTION:
            log.drop(f"voice with > {MAX_CLIPPED_FRACTION:.0%} clipped files", name)
            continue
        if not clips:
            continue
        bandwidth = bandwidth_hz(long_term_spectrum(clips))
        if bandwidth < MIN_BANDWIDTH_HZ:
            log.drop(f"band-limited voice (content stops at {bandwidth:.0f} Hz)", name)
            continue
        f0 = median_f0(clips[:200])
        kept[name] = dict(
            split=entry.split, source=entry.source, bandwidth_hz=round(bandwidth), median_f0=round(f0, 1),
            gender="" if np.isnan(f0) else ("F" if f0 >= FEMALE_F0_HZ else "M"),
            clips=len(clips), seconds=round(sum(len(c) for c in clips) / SAMPLE_RATE, 1),
        )
    return kept


def join_clips(clips: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Join consecutive clips, each levelled, with 0.15-0.5 s pauses, into utterances of
    :data:`UTTERANCE_SECONDS` to :data:`MAX_UTTERANCE_SECONDS` (a long clip stays as it is)."""
    utterances, current, length = [], [], 0
    for wav in clips:
        if current and length + len(wav) > MAX_UTTERANCE_SECONDS * SAMPLE_RATE:
            utterances.append(np.concatenate(current))
            current, length = [], 0
        if current:
            pause = np.zeros(int(rng.uniform(0.15, 0.5) * SAMPLE_RATE), np.float32)
            current.append(pause)
            length += len(pause)
        current.append(_level(wav).astype(np.float32))
        length += len(wav)
        if length >= UTTERANCE_SECONDS * SAMPLE_RATE:
            utterances.append(np.concatenate(current))
            current, length = [], 0
    if current and (length >= 1.0 * SAMPLE_RATE or not utterances):
        utterances.append(np.concatenate(current))
    return utterances


def write_speech(out: Path, speakers: dict[str, SpeakerClips], kept: dict[str, dict]) -> list[dict]:
    """Write joined utterances as FLAC and return the manifest rows."""
    rows = []
    for name, info in kept.items():
        clips = [wav for _, wav in speakers[name].clips if wav is not None]
        rng = example_rng(0, "join", name)
        folder = out / "speech" / info["split"] / name
        folder.mkdir(parents=True, exist_ok=True)
        for index, wav in enumerate(join_clips(clips, rng)):
            path = folder / f"{name}-{index:04d}.flac"
            peak = np.abs(wav).max()
            sf.write(str(path), wav / peak * 0.5 if peak > 0.99 else wav, SAMPLE_RATE, subtype="PCM_16")
            rows.append(dict(path=path.relative_to(out).as_posix(), speaker=name, gender=info["gender"],
                             split=info["split"], source=info["source"]))
    return rows


def write_noise(out: Path, trees: dict[str, Path], log: BuildLog) -> dict[str, float]:
    """Copy the real noise recordings (16 kHz mono wav, at most MAX_NOISE_SECONDS) into
    ``noise/SPLIT-CATEGORY/``. Returns seconds per category."""
    seconds: dict[str, float] = {}
    seen: set[str] = set()
    for source in (s for s in SOURCES if s.kind == "noise" and s.package in trees):
        category = f"{source.split}-{source.category}"
        folder = out / "noise" / category
        folder.mkdir(parents=True, exist_ok=True)
        for relative, path in matching_files(trees[source.package], source.pattern):
            if source.package == "tuxpaint-stamps-default" and "_" in path.stem:
                continue  # spoken names and descriptions, not effects
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            wav = read_clip(path)
            if wav is None or np.abs(wav).max() < 1e-4 or len(wav) < 0.25 * SAMPLE_RATE:
                log.drop("noise: unreadable, silent or shorter than 0.25 s", relative)
                continue
            wav = wav[: int(MAX_NOISE_SECONDS * SAMPLE_RATE)]
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{source.package}__{relative}")
            sf.write(str(folder / (Path(name).stem + ".wav")), np.clip(wav, -1, 1), SAMPLE_RATE, subtype="PCM_16")
            seconds[category] = seconds.get(category, 0.0) + len(wav) / SAMPLE_RATE
    return seconds


def write_babble(out: Path, rows: list[dict], split: str, count: int, seconds: float = 10.0) -> float:
    """Babble from 3-7 voices of one split (never a dev voice in training babble)."""
    voices: dict[str, list[str]] = {}
    for row in rows:
        if row["split"] == split:
            voices.setdefault(row["speaker"], []).append(row["path"])
    names = sorted(voices)
    if len(names) < 3 or count < 1:
        return 0.0
    folder = out / "noise" / f"{split}-babble"
    folder.mkdir(parents=True, exist_ok=True)
    length = int(seconds * SAMPLE_RATE)
    for index in range(count):
        rng = example_rng(0, "babble", split, index)
        talkers = rng.choice(names, size=min(len(names), int(rng.integers(3, 8))), replace=False)
        mix = np.zeros(length, np.float32)
        for talker in talkers:
            stream = []
            while sum(len(s) for s in stream) < length:
                path = voices[talker][rng.integers(len(voices[talker]))]
                stream.append(sf.read(str(out / path), dtype="float32")[0])
            mix += _level(np.concatenate(stream)[:length])
        sf.write(str(folder / f"babble-{split}-{index:03d}.wav"), mix / (np.abs(mix).max() + 1e-8) * 0.5,
                 SAMPLE_RATE, subtype="PCM_16")
    return count * seconds


def write_procedural(out: Path, split: str, count: int, seconds: float = 10.0) -> float:
    """Procedural noise (coloured, hum, speech-shaped; non-stationary envelopes) of the demo
    corpus's generator, seeded per split so the dev files are not the training files."""
    from leanse.data.noise import COLOURS, make_noise

    folder = out / "noise" / f"{split}-procedural"
    folder.mkdir(parents=True, exist_ok=True)
    kinds = [*COLOURS, "hum"]
    for index in range(count):
        rng = example_rng(1 if split == "dev" else 0, "procedural", index)
        kind = kinds[index % len(kinds)]
        wav, description = make_noise(kind, int(seconds * SAMPLE_RATE), SAMPLE_RATE, rng, [], np.ones(257),
                                      modulate=bool(index % 2))
        wav = wav / (np.abs(wav).max() + 1e-8) * 0.5
        sf.write(str(folder / f"{description.replace('+', '_')}-{index:03d}.wav"), wav.astype(np.float32),
                 SAMPLE_RATE, subtype="PCM_16")
    return count * seconds


LICENCE_HEADER = """# Licences of the real-speech corpus

Built by `leanse data real` from Debian's main archive (bookworm). Every file below `speech/` and
`noise/` was decoded, resampled to 16 kHz and (speech) joined into utterances; the packages'
copyright files are copied to `licenses/`. Whether GPL / CC-BY-SA data obliges anything for
trained weights is unsettled: every leanse model card names these sources.

| package | version | licence | used for |
|---|---|---|---|
"""


def write_licences(out: Path, trees: dict[str, Path]) -> None:
    lines = [LICENCE_HEADER]
    (out / "licenses").mkdir(exist_ok=True)
    for name, root in sorted(trees.items()):
        package = PACKAGES[name]
        uses = sorted({f"{s.kind} ({s.split}{', ' + s.category if s.category else ''})"
                       for s in SOURCES if s.package == name})
        lines.append(f"| {name} | {package.version} | {package.licence} | {'; '.join(uses)} |\n")
        for copyright_file in root.glob("usr/share/doc/*/copyright"):
            shutil.copy(copyright_file, out / "licenses" / f"{name}.copyright")
    (out / "LICENSES.md").write_text("".join(lines))


def build_real_corpus(
    out: str | os.PathLike,
    debs: str | os.PathLike | None = None,
    trees: dict[str, Path] | None = None,
    checksums: dict[str, str] | None = None,
    babble_files: int = 40,
    procedural_files: int = 24,
    dev_mixtures: int = 300,
    progress: bool = False,
) -> dict:
    """Build the real-speech corpus in ``out`` (see the module docstring); return a summary.

    ``debs`` is a folder of already-downloaded .deb files (otherwise ``apt-get download`` fills
    ``out/.debs``); ``trees`` skips the packages entirely and reads extracted package roots
    (``{package: folder}``, used by the tests). Building again over a finished corpus does nothing.
    """
    out = Path(out)
    summary_path = out / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    if out.exists() and any(p.name not in (".debs", ".packages") for p in out.iterdir()):
        raise CorpusError(f"{out}: exists, is not empty and holds no finished corpus; pick an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    if trees is None:
        names = sorted({s.package for s in SOURCES})
        cache = Path(debs) if debs else out / ".debs"
        say(f"fetching {len(names)} packages into {cache} ...")
        found = fetch_packages(cache, names, checksums)
        trees = {name: extract_deb(deb, out / ".packages" / name) for name, deb in found.items()}
    log = BuildLog()
    say("reading speech ...")
    speakers = collect_speech(trees, log)
    kept = screen_speakers(speakers, log)
    if not any(info["split"] == "train" for info in kept.values()):
        raise CorpusError("no usable training voices were found in the packages")
    say(f"writing {len(kept)} voices ...")
    rows = write_speech(out, speakers, kept)
    write_csv_atomic(out / "manifest.csv", ["path", "speaker", "gender", "split", "source"], rows)
    say("writing noise ...")
    noise_seconds = write_noise(out, trees, log)
    for split in ("train", "dev"):
        noise_seconds[f"{split}-babble"] = write_babble(out, rows, split, babble_files if split == "train" else babble_files // 4)
        noise_seconds[f"{split}-procedural"] = write_procedural(out, split, procedural_files if split == "train" else procedural_files // 2)
    write_licences(out, trees)
    from leanse.data.devset import write_dev_set

    say(f"writing the dev set ({dev_mixtures} mixtures) ...")
    dev = write_dev_set(out, count=dev_mixtures)
    minutes = {split: round(sum(i["seconds"] for i in kept.values() if i["split"] == split) / 60, 1)
               for split in ("train", "dev")}
    summary = dict(
        speakers={split: sorted(n for n, i in kept.items() if i["split"] == split) for split in ("train", "dev")},
        speech_minutes=minutes,
        utterances={split: sum(1 for r in rows if r["split"] == split) for split in ("train", "dev")},
        noise_minutes={k: round(v / 60, 1) for k, v in sorted(noise_seconds.items()) if v},
        voices=kept,
        dropped={reason: len(items) for reason, items in log.dropped.items()},
        dropped_voices={r: items for r, items in log.dropped.items() if "voice" in r},
        dev_set=dev,
    )
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, summary_path)  # written last: its presence marks a finished corpus
    return summary

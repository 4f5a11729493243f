"""Writing the demo corpus: folder checks, the synthesis pool, files, noise, and the manifest."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from leanse.data.demo import worker
from leanse.data.demo.constants import (
    BUILDING,
    ESPEAK_RATE,
    ESPEAK_VOLUME,
    FORMAT,
    MANIFEST,
    NOISE_SECONDS,
    NOISE_SPLITS,
    README,
    SAMPLE_RATE,
    SPEECH_PEAK,
    VERSION,
)
from leanse.data.demo.plan import DemoConfigError, PseudoSpeaker, _crc, plan_demo_corpus, split_sizes
from leanse.errors import CorpusError

def _check_parameters(**params: Any) -> None:
    for name in ("utterances_per_speaker", "noises_per_split"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DemoConfigError(f"{name}={value!r}: must be a whole number >= 1")
    if isinstance(params["seed"], bool) or not isinstance(params["seed"], int):
        raise DemoConfigError(f"seed={params['seed']!r}: must be a whole number")
    workers = params["workers"]
    bad_workers = isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    if workers is not None and bad_workers:
        raise DemoConfigError(
            f"workers={workers!r}: must be a whole number >= 1 (or None: all cores)"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CorpusError(
            f"{path}: unreadable ({err}); delete {path.parent} and run `leanse data demo` again"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CorpusError(f"{path}: not a leanse demo-corpus file; choose another --out folder")
    return data


def _corpus_is_complete(out: Path, files: dict[str, int]) -> bool:
    for rel, size in files.items():
        path = out / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def _inspect_out(out: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a complete corpus with the same parameters in ``out`` (nothing to do), or
    None when ``out`` may be (re)built: missing, empty, or our own unfinished or damaged build.

    Raises :class:`CorpusError` for anything that is not ours to write into.
    """
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: is a file; pass a folder (new or empty) for the demo corpus")
    manifest, building = out / MANIFEST, out / BUILDING
    if out.is_dir() and any(out.iterdir()):
        if manifest.is_file():
            data = _read_json(manifest)
            if data.get("parameters") != params:
                raise CorpusError(
                    f"{out}: already holds a demo corpus built with {data.get('parameters')}; "
                    f"rerun with those parameters, choose another --out, or delete {out} first"
                )
            if _corpus_is_complete(out, data.get("files", {})):
                return data
            # our own corpus with files missing or changed: rebuild the same files over it
        elif building.is_file():
            data = _read_json(building)
            if data.get("parameters") != params:
                raise CorpusError(
                    f"{out}: holds an unfinished demo corpus built with {data.get('parameters')}; "
                    f"rerun with those parameters to finish it, or delete {out} first"
                )
        else:
            raise CorpusError(
                f"{out}: the folder is not empty and is not a leanse demo corpus; "
                "nothing was written. Choose a new or empty folder for --out"
            )
    return None


def _mark_building(out: Path, params: dict[str, Any]) -> None:
    """Marker first, manifest gone: a crash from here on never leaves a corpus that looks
    complete, and the next call recognises the folder as its own unfinished build."""
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / BUILDING, json.dumps({"format": FORMAT, "parameters": params}, indent=1))
    (out / MANIFEST).unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary name beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _espeak_paths() -> tuple[str, Path]:
    try:
        import espeakng_loader
    except ImportError:
        raise CorpusError(
            "the demo corpus needs espeak-ng from the espeakng-loader package: "
            "pip install espeakng-loader"
        ) from None
    library, data = espeakng_loader.get_library_path(), Path(espeakng_loader.get_data_path())
    if not Path(library).is_file() or not (data / "phontab").is_file():
        raise CorpusError(
            f"espeakng-loader is installed but its library or voice data is missing ({library}, "
            f"{data}); reinstall it: pip install --force-reinstall espeakng-loader"
        )
    return library, data


def _private_espeak_data(source: Path, root: Path, plan: list[PseudoSpeaker]) -> None:
    """Copy the English part of espeak-ng-data into ``root`` and add one variant per speaker
    (the installed package folder may be read-only and must not be modified)."""

    def skip(folder: str, names: list[str]) -> list[str]:
        ignored = [n for n in names if n.endswith("_dict") and n != "en_dict"]
        if Path(folder).name == "!v":  # espeak's own variants are not needed
            ignored += names
        return ignored

    shutil.copytree(source, root / "espeak-ng-data", ignore=skip)
    variants = root / "espeak-ng-data" / "voices" / "!v"
    variants.mkdir(parents=True, exist_ok=True)
    for speaker in plan:
        (variants / speaker.variant_name).write_text(speaker.variant)


def _run_worker(job: dict[str, Any]) -> tuple[list[str], list[bytes]]:
    """Synthesise one speaker in a fresh interpreter (isolated mode: no user site, no cwd)."""
    proc = subprocess.run(
        [sys.executable, "-I", str(Path(worker.__file__).resolve()), "--espeak-worker"],
        input=json.dumps(job).encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CorpusError(
            f"espeak-ng synthesis failed for voice {job['voice']}: "
            f"{detail[-1] if detail else f'exit status {proc.returncode}'}; "
            "check that espeakng-loader is installed correctly (pip install --force-reinstall "
            "espeakng-loader)"
        )
    (length,) = struct.unpack("<Q", proc.stdout[:8])
    header = json.loads(proc.stdout[8 : 8 + length])
    pcm, offset, pcms = proc.stdout[8 + length :], 0, []
    for n in header["samples"]:
        pcms.append(pcm[offset : offset + 2 * n])
        offset += 2 * n
    return header["texts"], pcms


def _speakers_txt(plan: list[PseudoSpeaker], minutes: dict[int, float]) -> str:
    lines = [
        "; leanse demo corpus: synthetic pseudo-speakers (espeak-ng), not LibriSpeech speakers",
        "; Same format as LibriSpeech's SPEAKERS.TXT. Lines starting with ';' are comments.",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for s in sorted((s for s in plan if s.subset), key=lambda s: s.id):
        name = f"Pseudo Speaker {s.id} (espeak-ng {s.voice}, {s.rate} wpm)"
        lines.append(f"{s.id:<5}| {s.sex} | {s.subset:<17}| {minutes[s.id]:5.2f} | {name}")
    return "\n".join(lines) + "\n"


def write_demo_corpus(
    out: str | Path,
    speakers: int = 40,
    utterances_per_speaker: int = 20,
    seed: int = 0,
    workers: int | None = None,
    noises_per_split: int = 32,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the embedded demo corpus under ``out`` (see the module docstring and DATA.md).

    Args:
        out: a new or empty folder, or one holding a demo corpus from an earlier call.
        speakers: LibriSpeech pseudo-speakers, even and >= 6 (about 70/10/20 % train/dev/test).
        utterances_per_speaker: 2-6 s utterances per speaker.
        seed: everything (speakers, voices, text, noise) follows from it.
        workers: synthesis processes at a time (default: all cores); never changes the output.
        noises_per_split: noise files in each of ``free-sound`` and ``sound-bible``.
        progress: print progress to stderr.

    Returns:
        A summary: ``status`` ("built" or "already built"), ``seconds`` taken, the ``librispeech``
        and ``musan`` paths, speakers per subset, utterance / noise / file counts and durations.

    Raises:
        DemoConfigError: (a ConfigError and ValueError) for invalid parameters.
        CorpusError: ``out`` is not empty and not a demo corpus, or espeak-ng is unusable.
    """
    started = time.perf_counter()
    sizes = split_sizes(speakers)
    _check_parameters(
        utterances_per_speaker=utterances_per_speaker, noises_per_split=noises_per_split,
        seed=seed, workers=workers,
    )  # fmt: skip
    out = Path(out)
    params = {
        "speakers": speakers,
        "utterances_per_speaker": utterances_per_speaker,
        "seed": seed,
        "noises_per_split": noises_per_split,
        "version": VERSION,
    }
    existing = _inspect_out(out, params)
    if existing is not None:
        summary = dict(existing["summary"], status="already built", out=str(out))
        summary.update(
            librispeech=str(out / "LibriSpeech"), musan=str(out / "musan"),
            seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip
        return summary

    library, espeak_data = _espeak_paths()
    _mark_building(out, params)
    workers = workers or os.cpu_count() or 1
    plan = plan_demo_corpus(speakers, utterances_per_speaker, seed)
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="leanse-espeak-") as tmp:
        _private_espeak_data(espeak_data, Path(tmp), plan)
        minutes, babble_pools = _synthesise_all(out, plan, library, tmp, workers, progress, files)

    noise_types, noise_seconds = _write_noise(out, seed, noises_per_split, babble_pools, files)
    _write_text(out / "LibriSpeech" / "SPEAKERS.TXT", _speakers_txt(plan, minutes))
    files["LibriSpeech/SPEAKERS.TXT"] = out / "LibriSpeech" / "SPEAKERS.TXT"
    _write_text(out / "README.txt", README)
    files["README.txt"] = out / "README.txt"

    summary = {
        "status": "built",
        "out": str(out),
        "librispeech": str(out / "LibriSpeech"),
        "musan": str(out / "musan"),
        "speakers": sizes,
        "babble_speakers": len(plan) - speakers,
        "utterances": speakers * utterances_per_speaker,
        "speech_seconds": round(60 * sum(minutes.values()), 2),
        "noises": {split: noises_per_split for split in NOISE_SPLITS},
        "noise_seconds": round(noise_seconds, 2),
        "files": len(files) + 1,  # + the manifest
        "workers": workers,
    }
    manifest = {
        "format": FORMAT,
        "parameters": params,
        "summary": {k: v for k, v in summary.items() if k not in _RUN_KEYS},
        "babble_speakers": {
            split: sorted(s.id for s in plan if s.noise_split == split) for split in NOISE_SPLITS
        },
        "noise_types": noise_types,
        "files": {rel: path.stat().st_size for rel, path in sorted(files.items())},
    }
    # the manifest last: only a finished build has one; then the in-progress marker goes
    _write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    (out / BUILDING).unlink(missing_ok=True)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


#: Summary entries that describe one call, not the corpus: kept out of the manifest.
_RUN_KEYS = ("status", "out", "librispeech", "musan", "workers", "seconds")


def _synthesise_all(
    out: Path,
    plan: list[PseudoSpeaker],
    library: str,
    data_root: str,
    workers: int,
    progress: bool,
    files: dict[str, Path],
) -> tuple[dict[int, float], dict[str, list[list[Any]]]]:
    """Run one synthesis process per speaker, ``workers`` at a time, and write each LibriSpeech
    speaker's files as it arrives (the parent's resampling overlaps the other syntheses).

    Returns the minutes of speech per LibriSpeech speaker and, per noise split, the babble
    talkers' utterances (16 kHz float arrays) in plan order.
    """
    from leanse.audio import resample

    import numpy as np

    def to_16k(pcm: bytes) -> Any:
        wave = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
        wave = resample(wave, ESPEAK_RATE, SAMPLE_RATE)
        peak = float(np.max(np.abs(wave)))
        return wave * (SPEECH_PEAK / peak) if peak > SPEECH_PEAK else wave

    def job(s: PseudoSpeaker) -> dict[str, Any]:
        return {
            "library": library, "data_root": data_root, "voice": s.voice, "rate": s.rate,
            "volume": ESPEAK_VOLUME,
            "utterances": [[useed, target] for _, useed, target in s.utterances],
        }  # fmt: skip

    minutes: dict[int, float] = {}
    babble: dict[int, list[Any]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(_run_worker, job(s)): s for s in plan}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                speaker = pending.pop(future)
                try:
                    texts, pcms = future.result()
                except BaseException:
                    for other in pending:  # those not started yet; running ones finish quickly
                        other.cancel()
                    raise
                waves = [to_16k(pcm) for pcm in pcms]
                if speaker.subset is None:
                    babble[speaker.id] = waves
                else:
                    minutes[speaker.id] = _write_speaker(out, speaker, texts, waves, files) / 60
                if progress:
                    print(
                        f"demo corpus: {len(plan) - len(pending)}/{len(plan)} speakers synthesised",
                        file=sys.stderr,
                    )
    # completion order depends on the worker count: take the pools in plan order
    pools = {
        split: [babble[s.id] for s in plan if s.noise_split == split] for split in NOISE_SPLITS
    }
    return minutes, pools


def _write_speaker(
    out: Path, speaker: PseudoSpeaker, texts: list[str], waves: list[Any], files: dict[str, Path]
) -> float:
    """One speaker's FLAC files and chapter transcripts; returns the seconds of speech."""
    from leanse.audio import save_audio

    lines: dict[int, list[str]] = {chapter: [] for chapter in speaker.chapters}
    base = out / "LibriSpeech" / str(speaker.subset) / str(speaker.id)
    for (name, _, _), text, wave in zip(speaker.utterances, texts, waves):
        chapter = int(name.split("-")[1])
        path = save_audio(base / str(chapter) / f"{name}.flac", wave, SAMPLE_RATE, subtype="PCM_16")
        files[path.relative_to(out).as_posix()] = path
        lines[chapter].append(f"{name} {text}")
    for chapter, chapter_lines in lines.items():
        trans = base / str(chapter) / f"{speaker.id}-{chapter}.trans.txt"
        _write_text(trans, "\n".join(chapter_lines) + "\n")
        files[trans.relative_to(out).as_posix()] = trans
    return sum(wave.size for wave in waves) / SAMPLE_RATE


def _write_noise(
    out: Path,
    seed: int,
    count: int,
    pools: dict[str, list[list[Any]]],
    files: dict[str, Path],
) -> tuple[dict[str, str], float]:
    """The MUSAN-layout noise folders; babble and speech-shaped noise of each split come from
    that split's own held-out talkers. Returns each file's noise type and the total seconds."""
    import numpy as np

    from leanse.audio import save_audio
    from leanse.data import noise

    kinds = noise.noise_types()
    types: dict[str, str] = {}
    total = 0.0
    for split in NOISE_SPLITS:
        talkers = pools[split]
        spectrum = noise.long_term_spectrum([w for talker in talkers for w in talker])
        for i in range(count):
            rng = np.random.default_rng(_crc(seed, "noise", split, i))
            n = int(rng.uniform(*NOISE_SECONDS) * SAMPLE_RATE)
            # cycle through the types so every split has all of them; with 7 types, alternate
            # files are non-stationary and each type appears both ways within 14 files
            wav, kind = noise.make_noise(
                kinds[i % len(kinds)], n, SAMPLE_RATE, rng, talkers, spectrum, modulate=i % 2 == 1
            )
            path = out / "musan" / "noise" / split / f"noise-{split}-{i:04d}.wav"
            save_audio(path, wav, SAMPLE_RATE, subtype="PCM_16")
            rel = path.relative_to(out).as_posix()
            files[rel] = path
            types[rel] = kind
            total += n / SAMPLE_RATE
    return types, total

"""The espeak-ng synthesis worker: one fresh process per speaker, STANDARD LIBRARY ONLY.

The parent runs this file by path (``python -I worker.py --espeak-worker``), hands it a JSON job on
stdin and reads texts and int16 PCM from stdout. It imports nothing but the standard library and
the two standard-library-only modules beside it, however heavy ``leanse.data`` grows (each worker
start-up that imported numpy / soxr / torch would cost time on every speaker).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import random
import struct
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run by path as the synthesis worker: import leanse from this tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from leanse.data.demo.constants import ESPEAK_RATE, ESPEAK_VOLUME, MAX_SECONDS, MIN_SECONDS  # noqa: E402
from leanse.data.demo.grammar import make_sentence  # noqa: E402

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit() inside the library
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2


def _synthesise_speaker(job: dict[str, Any]) -> tuple[list[str], list[bytes]]:
    """Synthesise one speaker's utterances with libespeak-ng; returns texts and int16 PCM bytes.

    ``job``: ``library`` (path of libespeak-ng), ``data_root`` (folder containing
    ``espeak-ng-data``), ``voice`` (``accent+variant``), ``rate`` (words/minute) and
    ``utterances`` (``[seed, target_seconds]`` pairs).
    """
    lib = ctypes.CDLL(job["library"])
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None

    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, job["data_root"].encode(), _INITIALIZE_DONT_EXIT
    )
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak_Initialize returned {rate} (expected {ESPEAK_RATE} Hz)")
    chunks: list[bytes] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def on_audio(wav: Any, n_samples: int, _events: Any) -> int:
        if wav and n_samples > 0:
            chunks.append(ctypes.string_at(wav, 2 * n_samples))
        return 0  # 0 = keep synthesising

    callback = callback_type(on_audio)  # kept referenced until the end of this function
    lib.espeak_SetSynthCallback(callback)
    status = lib.espeak_SetVoiceByName(job["voice"].encode())
    if status != 0:  # a failed call silently keeps the previous voice: never accept that
        raise RuntimeError(f"espeak_SetVoiceByName({job['voice']!r}) failed with status {status}")
    lib.espeak_SetParameter(_PARAM_RATE, int(job["rate"]), 0)
    lib.espeak_SetParameter(_PARAM_VOLUME, int(job.get("volume", ESPEAK_VOLUME)), 0)
    libc = _libc()

    def synthesise(text: str, seed: int) -> bytes:
        lib.espeak_ng_SetRandSeed(seed)
        if libc is not None:
            libc.srand(ctypes.c_uint(seed))
        chunks.clear()
        data = text.encode() + b"\0"
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        return b"".join(chunks)

    words_per_second = int(job["rate"]) / 60.0
    texts, pcms = [], []
    for seed, target in job["utterances"]:
        rng = random.Random(seed)
        n_words = max(3, round(target * words_per_second))
        for attempt in range(6):
            text = make_sentence(rng, n_words)
            pcm = synthesise(text, (seed + attempt) & 0x7FFFFFFF)
            seconds = len(pcm) / 2 / ESPEAK_RATE
            if MIN_SECONDS <= seconds <= MAX_SECONDS:
                break
            # espeak's pace per word is steady: rescale the word count toward the target length
            n_words = max(2, round(n_words * target / max(seconds, 0.1)))
        texts.append(text)
        pcms.append(pcm)
    return texts, pcms


def _libc() -> Any:
    """The C library (its ``srand`` seeds ``rand()``, which espeak may also use), or None."""
    try:
        if sys.platform == "win32":
            return ctypes.cdll.msvcrt
        return ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None


def _worker_main() -> int:
    """Entry of a synthesis process: a JSON job on stdin, a length-prefixed JSON header (texts,
    sample counts) followed by the concatenated int16 PCM on stdout."""
    job = json.loads(sys.stdin.buffer.read())
    try:
        texts, pcms = _synthesise_speaker(job)
    except Exception as err:  # reported to the parent through stderr and the exit status
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 3
    header = json.dumps({"texts": texts, "samples": [len(p) // 2 for p in pcms]}).encode()
    out = sys.stdout.buffer
    out.write(struct.pack("<Q", len(header)) + header)
    for pcm in pcms:
        out.write(pcm)
    out.flush()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--espeak-worker"]:
    sys.exit(_worker_main())

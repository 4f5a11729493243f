"""Planning the demo corpus: speakers, subsets, voices, chapters and utterance seeds, all from the seed."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from leanse.data.demo.constants import ACCENTS, BABBLE_SPEAKERS, BABBLE_UTTERANCES, NOISE_SPLITS
from leanse.errors import ConfigError


class DemoConfigError(ConfigError, ValueError):
    """An invalid demo-corpus parameter (also a ``ValueError``)."""


@dataclass(frozen=True)
class PseudoSpeaker:
    """One pseudo-speaker: a LibriSpeech speaker (``subset`` set) or a held-out babble talker
    (``subset`` None, ``noise_split`` says which noise folder its babble goes to)."""

    id: int
    sex: str  # "M" or "F"
    subset: str | None
    noise_split: str | None
    accent: str
    rate: int  # words per minute
    variant: str  # text of the voices/!v file
    chapters: tuple[int, ...]
    utterances: tuple[tuple[str, int, float], ...]  # (SPEAKER-CHAPTER-UTT, seed, target seconds)

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant_name}"

    @property
    def variant_name(self) -> str:
        return f"leanse{self.id}"


def _crc(*parts: object) -> int:
    """A stable 31-bit seed from its parts (``hash()`` is salted per process)."""
    return zlib.crc32(":".join(str(p) for p in ("leanse-demo", *parts)).encode()) & 0x7FFFFFFF


def split_sizes(speakers: int) -> dict[str, int]:
    """Speakers per subset: about 70 / 10 / 20 %, each even (gender balance) and at least 2."""
    if isinstance(speakers, bool) or not isinstance(speakers, int) or speakers < 6 or speakers % 2:
        raise DemoConfigError(
            f"speakers={speakers!r}: the demo corpus needs an even number of speakers, at least 6 "
            "(three gender-balanced subsets); e.g. --speakers 40"
        )
    test = 2 * max(1, round(speakers * 0.2 / 2))
    dev = 2 * max(1, round(speakers * 0.1 / 2))
    return {"train-clean-100": speakers - dev - test, "dev-clean": dev, "test-clean": test}


def _variant(speaker_id: int, sex: str, rng: random.Random) -> str:
    """A voice-variant file: male voices low pitch and formants scaled <= 1, female high pitch
    and formants scaled up (shorter vocal tract); per voice also formant heights and widths, a
    spectral tilt (``tone``), voicing level, breath, roughness and flutter."""
    male = sex == "M"
    base = rng.randint(62, 110) if male else rng.randint(150, 215)
    top = base + (rng.randint(25, 75) if male else rng.randint(40, 120))
    scale = rng.uniform(0.85, 1.01) if male else rng.uniform(1.04, 1.22)
    lines = [
        "language variant",
        f"name leanse{speaker_id}",
        f"gender {'male' if male else 'female'}",
        f"pitch {base} {top}",
    ]
    for formant in range(9):
        # formants 1-5 carry most of a voice's identity: scale them with per-formant jitter
        freq = round(100 * scale * rng.uniform(0.94, 1.06)) if 1 <= formant <= 5 else 100
        height = rng.randint(75, 125) if formant <= 5 else 100
        width = rng.randint(75, 140) if formant <= 5 else 100
        lines.append(f"formant {formant} {freq} {height} {width}")
    breath = [0] + [rng.randint(0, 2 if male else 4) for _ in range(7)]
    tilt = [rng.randint(120, 255) for _ in range(4)]
    lines += [
        f"tone 600 {tilt[0]} 1200 {tilt[1]} 2000 {tilt[2]} 3000 {tilt[3]}",
        f"voicing {rng.randint(80, 130)}",
        "breath " + " ".join(map(str, breath)),
        f"roughness {rng.randint(0, 4)}",
        f"flutter {rng.randint(1, 10)}",
        f"consonants {rng.randint(75, 125)}",
    ]
    return "\n".join(lines) + "\n"


def plan_demo_corpus(
    speakers: int, utterances_per_speaker: int, seed: int
) -> list[PseudoSpeaker]:
    """Every pseudo-speaker of a demo corpus: the LibriSpeech ones, then the babble talkers."""
    sizes = split_sizes(speakers)
    rng = random.Random(_crc(seed, "layout"))
    n_babble = BABBLE_SPEAKERS * len(NOISE_SPLITS)
    ids = rng.sample(range(10, 10_000), speakers + n_babble)
    corpus_ids, babble_ids = sorted(ids[:speakers]), ids[speakers:]
    slots = [(subset, sex) for subset, n in sizes.items() for sex in "MF" for _ in range(n // 2)]
    rng.shuffle(slots)
    roles: list[tuple[int, str, str | None, str | None, int]] = [
        (sid, sex, subset, None, utterances_per_speaker)
        for sid, (subset, sex) in zip(corpus_ids, slots)
    ]
    for k, sid in enumerate(babble_ids):
        split = NOISE_SPLITS[k // BABBLE_SPEAKERS]
        roles.append((sid, "MF"[k % 2], None, split, BABBLE_UTTERANCES))
    n_chapters = [1 if n < 8 else 2 for *_, n in roles]
    chapter_ids = iter(rng.sample(range(1_000, 300_000), sum(n_chapters)))

    plan = []
    for (sid, sex, subset, split, n_utts), n_ch in zip(roles, n_chapters):
        voice_rng = random.Random(_crc(seed, "voice", sid))
        chapters = tuple(sorted(next(chapter_ids) for _ in range(n_ch)))
        utterances = []
        per_chapter = dict.fromkeys(chapters, 0)  # LibriSpeech numbers utterances per chapter
        for u in range(n_utts):
            chapter = chapters[u * n_ch // n_utts]
            name = f"{sid}-{chapter}-{per_chapter[chapter]:04d}"
            per_chapter[chapter] += 1
            utt_rng = random.Random(_crc(seed, "utterance", name))
            utterances.append((name, _crc(seed, "espeak", name), utt_rng.uniform(2.3, 5.7)))
        plan.append(
            PseudoSpeaker(
                id=sid,
                sex=sex,
                subset=subset,
                noise_split=split,
                accent=voice_rng.choice(ACCENTS),
                rate=voice_rng.randint(135, 195),
                variant=_variant(sid, sex, voice_rng),
                chapters=chapters,
                utterances=tuple(utterances),
            )
        )
    return plan

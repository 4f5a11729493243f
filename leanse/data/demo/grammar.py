"""English-like word sequences from a small embedded vocabulary (written for leanse); standard
library only (the synthesis worker imports it)."""

from __future__ import annotations

import random

_DETERMINERS = "the a this that every one some no another each".split()
_PRONOUNS = "he she they we you it nobody everyone".split()
_NOUNS = """
man woman child boy girl friend mother father brother sister doctor teacher farmer captain king
queen soldier stranger neighbour traveller house garden river road window door table chair
letter book paper story picture song horse dog bird cat tree flower field forest hill mountain
village city town church school market ship boat train bridge wall fire water stone sun moon
star wind rain snow morning evening night day week year hour moment minute winter summer
spring autumn voice word name answer question reason plan idea dream secret mind heart hand
face eye head shoulder foot bread milk coffee dinner supper breakfast money gold silver coat
hat bag box key lamp candle bell clock ring glass bottle cup plate knife rope basket corner
edge top bottom side end beginning middle shadow light colour sound silence
""".split()
_VERBS = """
saw found took gave made kept left brought sent told asked followed opened closed carried
watched heard wanted needed reached turned moved pulled pushed helped called showed held
lost knew thought remembered forgot bought sold built broke painted filled cleaned washed
counted crossed passed joined visited answered noticed touched dropped lifted raised caught
threw wrote read sang loved liked hated feared trusted chose changed missed met placed hid
""".split()
_ADJECTIVES = """
old young little big small great long short tall high low dark bright quiet loud warm cold
soft hard heavy light early late happy sad strange simple clear empty full open green red
blue white black brown golden silver quick slow gentle careful certain proud poor rich wild
calm deep wide narrow fresh busy tired free kind sharp round heavy distant
""".split()
_ADVERBS = """
slowly quickly quietly gently suddenly carefully often never always again soon later today
yesterday together almost already still once twice here there away outside inside
""".split()
_PREPOSITIONS = """
in on under over near behind beside across through into along toward from with without
""".split()
_CONJUNCTIONS = "and but because while when so until after before".split()
_FUNCTION_WORDS = set(_DETERMINERS + _PREPOSITIONS + _CONJUNCTIONS)


def _noun_phrase(rng: random.Random) -> list[str]:
    words = [rng.choice(_DETERMINERS)]
    if rng.random() < 0.5:
        words.append(rng.choice(_ADJECTIVES))
    return words + [rng.choice(_NOUNS)]


def _clause(rng: random.Random) -> list[str]:
    subject = [rng.choice(_PRONOUNS)] if rng.random() < 0.35 else _noun_phrase(rng)
    words = subject + [rng.choice(_VERBS)] + _noun_phrase(rng)
    roll = rng.random()
    if roll < 0.4:
        words += [rng.choice(_PREPOSITIONS)] + _noun_phrase(rng)
    elif roll < 0.6:
        words.append(rng.choice(_ADVERBS))
    return words


def make_sentence(rng: random.Random, n_words: int) -> str:
    """An English-like word sequence of about ``n_words`` words (clauses joined by conjunctions,
    cut to length without ending on a function word), upper case like LibriSpeech transcripts."""
    words: list[str] = []
    while len(words) < n_words:
        if words:
            words.append(rng.choice(_CONJUNCTIONS))
        words += _clause(rng)
    words = words[: max(n_words, 2)]
    while len(words) > 2 and words[-1] in _FUNCTION_WORDS:
        words.pop()
    return " ".join(words).upper()

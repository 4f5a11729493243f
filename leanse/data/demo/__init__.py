"""The embedded demo corpus: robotic pseudo-speakers from espeak-ng plus procedural noise, written
in the LibriSpeech / MUSAN layouts so the same readers serve it and the real corpora.

Decisions, all from DATA.md ("The embedded demo corpus") unless said otherwise:

- Speech comes from the libespeak-ng 1.52 shared library of the pip package ``espeakng-loader``,
  driven through ``ctypes`` with synchronous output (22,050 Hz) and resampled to 16 kHz with soxr
  in the parent process (scipy in the synthesis processes made them 8x slower).
- A pseudo-speaker is an accent voice (``en``, ``en-us``, ``en-gb-scotland``, ...; ``en-gb`` is not
  a valid name) plus a voice-variant file ``voices/!v/NAME`` written into a private copy of the
  data folder (gender, pitch base/range, per-formant frequency/height/width scaling, breath,
  roughness, flutter) and a speaking rate, all drawn from the seed. Male variants get low pitch
  and formant scaling <= 1, female ones high pitch and formant scaling > 1.
- Reproducibility: espeak seeds its breath noise from the clock, so ``espeak_ng_SetRandSeed`` and
  libc ``srand`` are called before every utterance; the library keeps waveform state across
  utterances (even across re-initialisation), so every speaker is synthesised in its own fresh
  process; per-utterance seeds come from ``zlib.crc32``, never ``hash()``. The same seed therefore
  gives byte-identical files with any number of workers.
- Splits: the three LibriSpeech subsets have disjoint speakers, each gender balanced (28 / 4 / 8
  for 40 speakers). Babble noise is made only from extra held-out pseudo-speakers that are in no
  subset, one pool for the ``free-sound`` (train / validation) noise and another for the
  ``sound-bible`` (test) noise.
- The folder is never trusted blindly: a non-empty folder that is not a demo corpus is refused,
  and ``demo_corpus.json`` (parameters, summary and every file's size) is written last, so an
  interrupted build never looks complete.

Choice of ours: each synthesis process is :mod:`leanse.data.demo.worker` run by path with
``python -I`` (not a ``multiprocessing`` child), so it imports only the standard library (and the
standard-library-only ``constants`` and ``grammar`` beside it), however heavy ``leanse.data``
grows; a thread pool in the parent runs them, ``workers`` at a time.

Modules: ``constants`` (rates, layout, README), ``grammar`` (the sentences), ``worker`` (espeak
synthesis), ``plan`` (speakers and seeds), ``corpus`` (writing the folder).

The speech is robotic: good for showing that a method works and for relative comparisons, not
for training a model meant for real use. espeak-ng is GPL-3 and is only loaded at run time from
the ``espeakng-loader`` dependency; no espeak code or data is part of leanse.
"""

from leanse.data.demo.constants import MANIFEST, SAMPLE_RATE, SUBSETS
from leanse.data.demo.corpus import write_demo_corpus
from leanse.data.demo.grammar import make_sentence
from leanse.data.demo.plan import DemoConfigError, PseudoSpeaker, plan_demo_corpus, split_sizes

__all__ = [
    "MANIFEST",
    "SAMPLE_RATE",
    "SUBSETS",
    "DemoConfigError",
    "PseudoSpeaker",
    "make_sentence",
    "plan_demo_corpus",
    "split_sizes",
    "write_demo_corpus",
]

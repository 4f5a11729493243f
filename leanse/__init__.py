"""leanse: efficient speech enhancement.

Every model maps a noisy waveform batch ``[B, T]`` to an estimate ``[B, T]`` (separation:
``[B, S, T]``) at its own ``sample_rate``; one loss, one metric suite, one trainer, one profiler
and one ``enhance`` serve them all.
"""

from leanse.errors import LeanseError

__version__ = "0.1.0"
__all__ = ["LeanseError", "__version__"]

"""Wall-clock cost: the real-time factor of a forward pass."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from leanse.complexity.counting import _noise
from leanse.errors import ConfigError


def measure_rtf(model: nn.Module, seconds: float, repeats: int = 3, threads: int = 1,
                **forward_kwargs: Any) -> float:
    """Real-time factor: median wall time of a forward pass / ``seconds`` (< 1 is faster).

    Eval mode, ``no_grad``, ``threads`` intra-op threads (the setting is restored afterwards),
    one untimed warm-up pass first (allocations, one-off kernel selection).
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, not {repeats}")
    wav = _noise(model, seconds)
    old_threads = torch.get_num_threads()
    training = {m: m.training for m in model.modules()}
    try:
        torch.set_num_threads(int(threads))
        model.eval()
        times = []
        with torch.no_grad():
            model(wav, **forward_kwargs)
            for _ in range(repeats):
                start = time.perf_counter()
                model(wav, **forward_kwargs)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(old_threads)
        for module, flag in training.items():
            module.training = flag
    return statistics.median(times) / float(seconds)

"""Training objectives on waveforms (all return a loss to *minimise*, averaged over the batch).

SI-SDR follows Le Roux et al. 2019 ("SDR -- half-baked or well done?"): both signals are made
zero-mean first, then ``alpha = <s_hat, s> / <s, s>`` scales the target (papers 000 eq. 1, 003
eq. 1). Papers' own code sometimes skipped the mean removal; leanse always removes it.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch

EPS = 1e-8


def si_sdr(estimate: torch.Tensor, target: torch.Tensor, zero_mean: bool = True) -> torch.Tensor:
    """Scale-invariant SDR in dB along the last axis: ``[..., T]`` -> ``[...]``."""
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        target = target - target.mean(dim=-1, keepdim=True)
    alpha = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + EPS)
    projection = alpha * target
    noise = estimate - projection
    return 10 * torch.log10((projection.pow(2).sum(-1) + EPS) / (noise.pow(2).sum(-1) + EPS))


def snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain SNR (SDR with ``alpha = 1``) in dB along the last axis."""
    return 10 * torch.log10(
        (target.pow(2).sum(-1) + EPS) / ((estimate - target).pow(2).sum(-1) + EPS)
    )


def neg_si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The papers' training loss: the additive inverse of SI-SDR, batch mean."""
    return -si_sdr(estimate, target).mean()


def neg_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative SNR, batch mean (GroupComm, paper 002, trains on SNR)."""
    return -snr(estimate, target).mean()


def mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on waveforms."""
    return torch.mean((estimate - target) ** 2)


PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: dict[str, PairLoss] = {"si_sdr": neg_si_sdr, "snr": neg_snr, "mse": mse}


def pit(loss: PairLoss, estimates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant training (Kolbaek et al. 2017) for ``[B, S, T]`` signals.

    ``loss`` is evaluated per example for every permutation of the estimated sources; each example
    keeps its best permutation. Exhaustive search is fine for the S <= 3 of the papers.
    """
    num_sources = targets.shape[1]
    per_permutation = []
    for perm in itertools.permutations(range(num_sources)):
        permuted = estimates[:, list(perm)]
        per_example = torch.stack(
            [loss(permuted[b : b + 1], targets[b : b + 1]) for b in range(targets.shape[0])]
        )  # [B]
        per_permutation.append(per_example)
    return torch.stack(per_permutation, dim=0).min(dim=0).values.mean()


def get_loss(name: str) -> PairLoss:
    """Look up a loss by its recipe name (``si_sdr``, ``snr``, ``mse``)."""
    from leanse.errors import ConfigError

    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]

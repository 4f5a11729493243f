"""Training objectives on waveforms (all return a loss to *minimise*, averaged over the batch).

SI-SDR follows Le Roux et al. 2019 ("SDR -- half-baked or well done?"): both signals are made
zero-mean first, then ``alpha = <s_hat, s> / <s, s>`` scales the target (papers 000 eq. 1, 003
eq. 1). Papers' own code sometimes skipped the mean removal; leanse always removes it.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch
from torch import nn

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


def compressed_spectral(
    estimate: torch.Tensor, target: torch.Tensor, n_fft: int = 512, hop: int = 128,
    power: float = 0.3, complex_weight: float = 0.3,
) -> torch.Tensor:
    """Compressed spectral MSE (Braun & Tashev 2021, "A consolidated view of loss functions for
    supervised deep learning-based speech enhancement", eq. 6): magnitudes raised to ``power``
    = 0.3, a ``complex_weight`` = 0.3 blend of the compressed complex spectra (phase kept) and
    the compressed magnitudes, each error normalised by the target's compressed energy so the
    loss does not depend on the level. Waveforms ``[..., T]``; batch mean."""
    window = torch.hann_window(n_fft, device=estimate.device, dtype=estimate.dtype)

    def compressed(wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]), n_fft, hop, window=window, return_complex=True)
        magnitude = spec.abs().clamp_min(1e-8)  # [B, F, N]
        scaled = magnitude.pow(power)
        return scaled, scaled * (spec / magnitude)

    est_mag, est_complex = compressed(estimate)
    ref_mag, ref_complex = compressed(target)
    energy = ref_mag.pow(2).mean(dim=(-2, -1)) + EPS  # [B]
    complex_error = (est_complex - ref_complex).abs().pow(2).mean(dim=(-2, -1))
    magnitude_error = (est_mag - ref_mag).pow(2).mean(dim=(-2, -1))
    return ((complex_weight * complex_error + (1 - complex_weight) * magnitude_error) / energy).mean()


def si_sdr_spectral(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative SI-SDR (dB) plus 10x the level-normalised compressed spectral MSE: SI-SDR keeps
    the waveform in shape, the spectral term weighs the quiet T-F regions that PESQ and DNSMOS
    hear and SI-SDR ignores. The weight 10 is a first choice (an untrained model's normalised
    error is about 1, a trained one's about 0.1), to be settled by the real-speech ablation."""
    return neg_si_sdr(estimate, target) + 10.0 * compressed_spectral(estimate, target)


def _spec_004(wav: torch.Tensor) -> torch.Tensor:
    """004's STFT (Sec. III-A: 20 ms Hamming frames, 10 ms hop, 320-point DFT, 161 bins)."""
    from leanse.models.compression_baselines import _stft

    return _stft().to(wav.device)(wav.reshape(-1, wav.shape[-1]))  # [B, 161, N] complex


def tf_magnitude_mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """004's objective for spectral magnitude mapping (LSTM, Sec. III-B2/C): the MSE between
    estimated and clean STFT magnitudes, averaged over T-F units (on 004's STFT of the
    waveforms; the models resynthesise with the noisy phase)."""
    return torch.mean((_spec_004(estimate).abs() - _spec_004(target).abs()) ** 2)


def tf_complex_mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """004's objective for complex spectral mapping (GCRN, Sec. III-B4/C): the MSE of the real
    and imaginary parts, averaged over T-F units."""
    diff = _spec_004(estimate) - _spec_004(target)
    return torch.mean(diff.real ** 2 + diff.imag ** 2) / 2


def irm_mse(estimate: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """004's FDNN objective (Sec. III-B1, eq. 12): MSE between the ideal ratio mask
    ``sqrt(|S|^2 / (|S|^2 + |N|^2))`` and the model's mask, over T-F units. The mask is read off
    the output as ``|STFT(estimate)| / |STFT(noisy)|``, clipped at 1 (a masking model's output STFT
    is its mask times the noisy STFT, up to the STFT's consistency), so any waveform model can
    train on it; for 004's FDNN (sigmoid mask) this is its IRM objective up to that consistency."""
    noisy_spec = _spec_004(noisy)
    clean_spec = _spec_004(target)
    speech = clean_spec.abs() ** 2
    noise = (noisy_spec - clean_spec).abs() ** 2
    irm = torch.sqrt(speech / (speech + noise + EPS))
    mask = (_spec_004(estimate).abs() / (noisy_spec.abs() + EPS)).clamp(max=1.0)  # masks <= 1
    return torch.mean((mask - irm) ** 2)


irm_mse.needs_noisy = True  # type: ignore[attr-defined]  (the task passes the noisy input too)

PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: dict[str, PairLoss] = {
    "si_sdr": neg_si_sdr, "snr": neg_snr, "mse": mse, "si_sdr_spectral": si_sdr_spectral,
    # 004 (Sec. III-C): MSE over T-F units (LSTM: magnitudes; GCRN: real / imaginary parts) or
    # time samples (TCNN: "mse").
    "tf_magnitude_mse": tf_magnitude_mse, "tf_complex_mse": tf_complex_mse, "irm_mse": irm_mse,
}


class PITLossWrapper(nn.Module):
    """Utterance-level permutation-invariant training (Kolbaek et al. 2017) over a pairwise loss,
    as Asteroid's ``PITLossWrapper(pit_from="pw_mtx")``.

    ``pair_loss(estimate [..., T], reference [..., T]) -> [...]`` is the loss of one pairing (lower
    is better, broadcasting over leading axes, e.g. ``lambda e, r: -snr(e, r)``). For ``[B, S, T]``
    estimates and references the wrapper scores all ``S x S`` pairings at once, keeps each
    example's best permutation (exhaustive search over the ``S!`` permutations, fine for the
    S <= 3 of the papers) and returns the batch mean of its mean-over-sources loss.
    """

    def __init__(self, pair_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.pair_loss = pair_loss

    def pairwise_losses(self, estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """``[B, S, T]`` x ``[B, S, T]`` -> ``[B, S_est, S_ref]``: the loss of every pairing."""
        return self.pair_loss(estimates.unsqueeze(2), references.unsqueeze(1))

    @staticmethod
    def best_permutation(pair_losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``[B, S, S]`` pair losses, the permutation (estimate ``perm[j]`` -> reference ``j``)
        with the lowest mean loss, per example: ``(mean loss [B], permutation [B, S])``."""
        num_sources = pair_losses.shape[-1]
        perms = torch.tensor(list(itertools.permutations(range(num_sources))), device=pair_losses.device)  # [P, S]
        refs = torch.arange(num_sources, device=pair_losses.device)
        totals = pair_losses[:, perms, refs].mean(-1)  # [B, P]: pair_losses[b, perm[p, j], j] averaged over j
        best = totals.argmin(-1)  # [B]
        return totals.gather(1, best[:, None])[:, 0], perms[best]

    def forward(self, estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """``[B, S, T]`` x ``[B, S, T]`` -> the batch mean of each example's best-permutation loss."""
        best, _ = self.best_permutation(self.pairwise_losses(estimates, references))
        return best.mean()


def _negated(metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
    def loss(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return -metric(estimate, reference)

    loss.__name__ = f"negative_{metric.__name__}"
    return loss


#: Separation objectives (``train.loss`` of a separation recipe): PIT over a per-pair negated metric.
PIT_LOSSES: dict[str, PITLossWrapper] = {
    "snr": PITLossWrapper(_negated(snr)),
    "si_sdr": PITLossWrapper(_negated(si_sdr)),
}


def get_loss(name: str) -> PairLoss:
    """Look up a loss by its recipe name (``si_sdr``, ``snr``, ``mse``)."""
    from leanse.errors import ConfigError

    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]

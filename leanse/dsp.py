"""Signal processing shared by the models: STFT / iSTFT pairs and learned filterbanks."""

from __future__ import annotations

import torch
from torch import nn


class STFT(nn.Module):
    """Magnitude/phase analysis and resynthesis with a Hann window (``torch.stft``).

    ``n_fft`` 1024 and hop 256 are the settings of papers 000 and 001 (513 frequency bins).
    """

    def __init__(self, n_fft: int = 1024, hop_length: int = 256) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        # Not persistent: the window is a function of n_fft, not a learned weight.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` waveform -> ``[B, F, N]`` complex spectrogram."""
        return torch.stft(
            wav,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            return_complex=True,
        )

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``[B, F, N]`` complex spectrogram -> ``[B, length]`` waveform."""
        return torch.istft(
            spec, self.n_fft, self.hop_length, window=self.window, center=True, length=length
        )

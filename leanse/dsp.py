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


# --------------------------------------------------------------------------------------------
# Paper 004 framing: explicit zero padding, frames from ``center=False``, weighted overlap-add
# --------------------------------------------------------------------------------------------

WINDOWS = {
    "hamming": lambda n: torch.hamming_window(n),
    "hann": lambda n: torch.hann_window(n),
    "sqrt_hann": lambda n: torch.hann_window(n).sqrt(),
    "rectangular": lambda n: torch.ones(n),
}


def num_padded_frames(length: int, frame_length: int, hop_length: int, pad: int) -> int:
    """Frames of a ``length``-sample signal padded with ``pad`` zeros on each side."""
    return (length + 2 * pad - frame_length) // hop_length + 1


def pad_for_frames(wav: torch.Tensor, frame_length: int, hop_length: int, pad: int) -> torch.Tensor:
    """Zero-pad ``[B, T]`` by ``pad`` on the left and by ``pad`` plus whatever completes the last
    hop on the right (nothing for 004's 4 s inputs: 64,000 + 320 samples give 401 frames)."""
    padded = wav.shape[-1] + 2 * pad
    extra = (-(padded - frame_length)) % hop_length if padded >= frame_length else (
        frame_length - padded)
    return nn.functional.pad(wav, (pad, pad + extra))


def overlap_add(frames: torch.Tensor, window: torch.Tensor, hop_length: int, pad: int,
                length: int) -> torch.Tensor:
    """Weighted overlap-add: ``[B, N, L]`` frames -> ``[B, length]`` waveform.

    Each frame is multiplied by the synthesis ``window`` and the sum is divided by the sum of the
    squared windows (the least-squares inverse of windowed framing, Griffin & Lim 1984), then the
    ``pad`` samples of the analysis padding are cut away. Exact for any window that is non-zero
    somewhere in every covered sample, including windows that vanish at the frame edges (Hann),
    where ``torch.istft(center=False)`` refuses to run.
    """
    batch, num_frames, frame_length = frames.shape
    total = (num_frames - 1) * hop_length + frame_length
    fold = dict(output_size=(1, total), kernel_size=(1, frame_length), stride=(1, hop_length))
    signal = nn.functional.fold((frames * window).transpose(1, 2), **fold).reshape(batch, total)
    envelope = window.square().reshape(1, frame_length, 1).expand(1, frame_length, num_frames)
    envelope = nn.functional.fold(envelope, **fold).reshape(1, total)
    signal = signal / envelope.clamp_min(1e-8)
    return signal[:, pad : pad + length]


class PaddedSTFT(nn.Module):
    """STFT / iSTFT with paper 004's framing (004 Sec. III-A).

    20 ms frames (320 samples at 16 kHz), 10 ms hop (50 % overlap), a 320-point DFT -> 161 bins.
    The signal is zero-padded by ``pad`` = 160 samples on each side and framed with
    ``torch.stft(center=False)``, which is what gives 401 frames for 4 s (64,000 samples): the
    frame count the published MACs are computed on. The inverse is a weighted overlap-add
    (:func:`overlap_add`) that gives back exactly ``length`` samples.

    Window: **Hamming** by default, because 004 Sec. III-A says "a 20-ms Hamming window"; the
    same window is used for synthesis and the overlap-add divides by the summed squared window,
    so analysis followed by synthesis is the identity for any window in :data:`WINDOWS` (``hann``
    and ``sqrt_hann`` are available; none changes a parameter or MAC count).
    """

    def __init__(self, n_fft: int = 320, hop_length: int = 160, pad: int = 160,
                 window: str = "hamming") -> None:
        super().__init__()
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {sorted(WINDOWS)}, not {window!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.pad = pad
        self.window_name = window
        self.register_buffer("window", WINDOWS[window](n_fft), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, length: int) -> int:
        return num_padded_frames(length, self.n_fft, self.hop_length, self.pad)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` waveform -> ``[B, F, N]`` complex spectrogram."""
        padded = pad_for_frames(wav, self.n_fft, self.hop_length, self.pad)
        return torch.stft(padded, self.n_fft, self.hop_length, window=self.window, center=False,
                          return_complex=True)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``[B, F, N]`` complex spectrogram -> ``[B, length]`` waveform."""
        frames = torch.fft.irfft(spec.transpose(1, 2), n=self.n_fft)  # [B, N, n_fft]
        return overlap_add(frames, self.window, self.hop_length, self.pad, length)


class PaddedFraming(nn.Module):
    """Time-domain framing with the same 004 geometry (TCNN, Pandey & Wang 2019): rectangular
    320-sample frames, hop 160, 160 zeros each side; the inverse is overlap-add divided by the
    number of overlapping frames (2 in the interior), so framing then ``inverse`` is the identity.
    """

    def __init__(self, frame_length: int = 320, hop_length: int = 160, pad: int = 160) -> None:
        super().__init__()
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.pad = pad
        self.register_buffer("window", torch.ones(frame_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, N, frame_length]``."""
        padded = pad_for_frames(wav, self.frame_length, self.hop_length, self.pad)
        return padded.unfold(-1, self.frame_length, self.hop_length)

    def inverse(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        return overlap_add(frames, self.window, self.hop_length, self.pad, length)

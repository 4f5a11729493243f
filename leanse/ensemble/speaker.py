"""Speaker-informed gating of paper 001: embedding f, Siamese pre-training, k-means groups, gate g.

The pipeline (001 Sec. 2.2-2.4, Sec. 3):

1. :class:`SpeakerEmbedding` ``f``: a GRU (2 layers x 32 units at 8 kHz, n_fft 1024 / hop 256 ->
   513 bins) over the magnitude STFT of a noisy utterance; the top layer's output at the last frame
   is the 32-dimensional embedding ``z`` (preset ``speaker-embed-32x2-8k``, 58,848 parameters).
2. :class:`SiameseVerifier`: ``y_hat = sigmoid(<f(x_i), f(x_j)>)``, trained with binary cross
   entropy against ``y = 1`` for the same speaker and ``0`` otherwise, on pairs from
   :func:`verification_pairs` (equal chance of same / different, 001 Sec. 3).
3. :func:`speaker_groups`: average the embeddings of each training speaker and cluster the means
   with k-means into ``K`` groups (001 Sec. 2.3).
4. :class:`GroupClassifier` ``g``: one dense layer ``Linear(32, K)`` (+ softmax) on the (frozen)
   embedding, trained on the k-means labels (001 Sec. 2.4). :class:`SpeakerGate` is ``g(f(x))``
   with the same interface as :class:`~leanse.ensemble.gates.RNNGate`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from leanse.ensemble.gates import (
    Gate,
    UtteranceNet,
    last_frame_rnn,
    register_gate,
    register_gate_preset,
)
from leanse.errors import ConfigError, LeanseError

Item = TypeVar("Item")


@register_gate("speaker_embedding")
class SpeakerEmbedding(UtteranceNet):
    """The embedding function ``f`` of 001 Sec. 2.2 / 3: GRU over |X|, last frame = ``z``.

    Args:
        hidden_size: embedding size (32 in 001).
        num_layers: stacked GRU layers (2 in 001).
        rnn_type: ``"gru"`` (001) or ``"lstm"``.
        n_fft, hop_length, sample_rate: 1024 / 256 (75 % overlap) at 8 kHz in 001.
    """

    def __init__(
        self,
        hidden_size: int = 32,
        num_layers: int = 2,
        rnn_type: str = "gru",
        n_fft: int = 1024,
        hop_length: int = 256,
        sample_rate: int = 8000,
    ) -> None:
        super().__init__(n_fft, hop_length, sample_rate)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn_type = rnn_type
        self.rnn = last_frame_rnn(rnn_type, self.stft.num_bins, hidden_size, num_layers)

    @property
    def embedding_size(self) -> int:
        return self.hidden_size

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` noisy waveform -> ``[B, D]`` embedding ``z`` (no normalisation: 001 uses
        the raw inner product)."""
        hidden, _ = self.rnn(self.magnitude(wav))  # [B, N, D]
        return hidden[:, -1]  # [B, D]


class SiameseVerifier(nn.Module):
    """Speaker verification head of 001 Sec. 2.2: ``y_hat = sigmoid(z_i . z_j)``.

    The same embedding function ``f`` encodes both utterances (a Siamese network); it has no
    parameters of its own.
    """

    def __init__(self, embedding: SpeakerEmbedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Two ``[B, T]`` waveform batches -> ``[B]`` similarity logits ``<z_i, z_j>``."""
        z_first = self.embedding(first)  # [B, D]
        z_second = self.embedding(second)  # [B, D]
        return (z_first * z_second).sum(dim=-1)  # [B]

    def probability(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """``[B]`` probability that each pair is from the same speaker."""
        return torch.sigmoid(self(first, second))

    def loss(self, first: torch.Tensor, second: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """Binary cross entropy between ``sigmoid(<z_i, z_j>)`` and ``same`` (1 = same speaker).

        Computed from the logits (``binary_cross_entropy_with_logits``): the same value as BCE on
        the sigmoid, without its overflow for large inner products.
        """
        return nn.functional.binary_cross_entropy_with_logits(
            self(first, second), same.to(dtype=first.dtype)
        )


@dataclass(frozen=True)
class VerificationPair(Generic[Item]):
    """Two utterances and whether they come from the same speaker (the target ``y``)."""

    first: Item
    second: Item
    same: bool


def verification_pairs(
    utterances: Sequence[Item],
    speakers: Sequence[Hashable],
    num_pairs: int,
    rng: np.random.Generator | int,
) -> list[VerificationPair[Item]]:
    """Balanced pairs for Siamese training (001 Sec. 3: "an equal chance of being from the same
    speaker or not").

    Exactly ``num_pairs // 2`` pairs are same-speaker and the rest different-speaker, in a shuffled
    order. A same pair draws a speaker uniformly among those with at least two utterances, then two
    distinct utterances of theirs; a different pair draws two distinct speakers uniformly, then one
    utterance of each. ``rng`` is a seeded ``numpy.random.Generator`` or a seed, so the same seed
    gives the same pairs.
    """
    if len(utterances) != len(speakers):
        raise LeanseError(
            f"verification_pairs needs one speaker per utterance; got {len(utterances)} utterances "
            f"and {len(speakers)} speakers"
        )
    if num_pairs < 0:
        raise LeanseError(f"num_pairs must be >= 0, got {num_pairs}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    by_speaker: dict[Hashable, list[int]] = {}
    for index, speaker in enumerate(speakers):
        by_speaker.setdefault(speaker, []).append(index)
    names = list(by_speaker)
    repeated = [s for s in names if len(by_speaker[s]) >= 2]
    num_same = num_pairs // 2
    num_different = num_pairs - num_same
    if num_same and not repeated:
        raise LeanseError(
            "same-speaker pairs need a speaker with at least two utterances; none has: add utterances"
        )
    if num_different and len(names) < 2:
        raise LeanseError(
            f"different-speaker pairs need at least two speakers; got {len(names)}: add speakers"
        )
    pairs: list[VerificationPair[Item]] = []
    for _ in range(num_same):
        speaker = repeated[rng.integers(len(repeated))]
        i, j = rng.choice(by_speaker[speaker], size=2, replace=False)
        pairs.append(VerificationPair(utterances[int(i)], utterances[int(j)], True))
    for _ in range(num_different):
        a, b = rng.choice(len(names), size=2, replace=False)
        i = by_speaker[names[a]][rng.integers(len(by_speaker[names[a]]))]
        j = by_speaker[names[b]][rng.integers(len(by_speaker[names[b]]))]
        pairs.append(VerificationPair(utterances[i], utterances[j], False))
    order = rng.permutation(len(pairs))
    return [pairs[int(k)] for k in order]


def speaker_means(
    embeddings_by_speaker: Mapping[str, torch.Tensor],
) -> tuple[list[str], torch.Tensor]:
    """Element-wise mean embedding per speaker (001 Sec. 2.3): sorted speakers, ``[S, D]`` means.

    Each value is ``[U, D]`` (one row per utterance) or ``[D]`` (already one vector).
    """
    speakers = sorted(embeddings_by_speaker)
    means = []
    for speaker in speakers:
        vectors = torch.as_tensor(embeddings_by_speaker[speaker]).detach().float().cpu()
        if vectors.dim() == 1:
            vectors = vectors.unsqueeze(0)
        if vectors.dim() != 2 or vectors.shape[0] == 0:
            raise LeanseError(
                f"speaker {speaker!r}: expected embeddings [utterances, dim], got shape "
                f"{tuple(vectors.shape)}"
            )
        if not torch.isfinite(vectors).all():
            raise LeanseError(f"speaker {speaker!r}: embeddings contain NaN or inf")
        means.append(vectors.mean(dim=0))
    dims = {m.shape[0] for m in means}
    if len(dims) > 1:
        raise LeanseError(f"speaker embeddings have different sizes: {sorted(dims)}")
    return speakers, torch.stack(means) if means else torch.empty(0, 0)


def speaker_groups(
    embeddings_by_speaker: Mapping[str, torch.Tensor], k: int, seed: int = 0, n_init: int = 10
) -> dict[str, int]:
    """Cluster training speakers into ``k`` groups (001 Sec. 2.3): k-means on per-speaker means.

    Deterministic for a ``seed`` (scikit-learn ``KMeans(n_init=n_init, random_state=seed)``, speakers
    taken in sorted order). Group ids are renumbered by first appearance in sorted speaker order so
    they do not depend on k-means' arbitrary cluster numbering. Every speaker gets a group in
    ``range(k)`` and every group has at least one speaker.
    """
    from sklearn.cluster import KMeans

    if k < 2:
        raise LeanseError(f"k must be at least 2 speaker groups, got {k}")
    speakers, means = speaker_means(embeddings_by_speaker)
    if len(speakers) < k:
        raise LeanseError(
            f"cannot form {k} speaker groups from {len(speakers)} speakers: "
            f"lower k or embed more speakers"
        )
    distinct = torch.unique(means, dim=0).shape[0]
    if distinct < k:
        raise LeanseError(
            f"cannot form {k} speaker groups: only {distinct} distinct speaker embeddings "
            f"(identical means); lower k or check the embedding model"
        )
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(means.double().numpy())
    renumber: dict[int, int] = {}
    for label in labels:
        renumber.setdefault(int(label), len(renumber))
    return {speaker: renumber[int(label)] for speaker, label in zip(speakers, labels)}


class GroupClassifier(nn.Module):
    """The classifier ``g`` of 001 Sec. 2.4: ``p = softmax(W z + b)``, one dense layer.

    ``forward`` returns the logits; the softmax is applied by the user (or by the loss).
    """

    def __init__(self, embedding_size: int = 32, num_classes: int = 5) -> None:
        super().__init__()
        self.dense = nn.Linear(embedding_size, num_classes)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` embeddings -> ``[B, K]`` logits."""
        return self.dense(embedding)

    def probabilities(self, embedding: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return torch.softmax(scale * self(embedding), dim=-1)


@register_gate("speaker_gate")
class SpeakerGate(Gate):
    """The speaker-informed gate of 001 Fig. 1: embedding ``f`` followed by classifier ``g``.

    Same interface as :class:`~leanse.ensemble.gates.RNNGate`: ``[B, T]`` -> ``[B, K]`` logits.
    With the defaults (GRU 32 x 2, 8 kHz, 513 bins) it has ``58,848 + 33 K`` parameters.
    Gate pre-training (001 Sec. 2.4) trains only ``g`` on a frozen ``f``: call
    :meth:`freeze_embedding`; ensemble fine-tuning (Sec. 2.6) unfreezes it again.
    """

    def __init__(
        self,
        num_classes: int = 5,
        embedding_size: int = 32,
        num_layers: int = 2,
        rnn_type: str = "gru",
        n_fft: int = 1024,
        hop_length: int = 256,
        sample_rate: int = 8000,
    ) -> None:
        super().__init__(n_fft, hop_length, sample_rate, own_stft=False)  # f owns the STFT
        if num_classes < 2:
            raise ConfigError(f"a gate chooses between at least 2 specialists, got num_classes={num_classes}")
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.num_layers = num_layers
        self.rnn_type = rnn_type
        self.embedding = SpeakerEmbedding(
            embedding_size, num_layers, rnn_type, n_fft, hop_length, sample_rate
        )
        self.classifier = GroupClassifier(embedding_size, num_classes)

    @classmethod
    def from_parts(cls, embedding: SpeakerEmbedding, classifier: GroupClassifier) -> "SpeakerGate":
        """Assemble a gate from a pre-trained ``f`` and ``g`` (weights are copied)."""
        if classifier.dense.in_features != embedding.hidden_size:
            raise ConfigError(
                f"classifier reads {classifier.dense.in_features}-dim embeddings but the embedding "
                f"gives {embedding.hidden_size}"
            )
        gate = cls(
            num_classes=classifier.dense.out_features,
            embedding_size=embedding.hidden_size,
            num_layers=embedding.num_layers,
            rnn_type=embedding.rnn_type,
            n_fft=embedding.n_fft,
            hop_length=embedding.hop_length,
            sample_rate=embedding.sample_rate,
        )
        gate.embedding.load_state_dict(embedding.state_dict())
        gate.classifier.load_state_dict(classifier.state_dict())
        return gate

    def freeze_embedding(self, frozen: bool = True) -> None:
        """Stop (or restart) gradient updates of ``f``."""
        self.embedding.requires_grad_(not frozen)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` noisy waveform -> ``[B, K]`` logits ``g(f(x))``."""
        return self.classifier(self.embedding(wav))  # [B, D] -> [B, K]


def _speaker_presets() -> None:
    base: dict[str, Any] = dict(n_fft=1024, hop_length=256, sample_rate=8000)
    register_gate_preset(
        "speaker-embed-32x2-8k",
        dict(name="speaker_embedding", hidden_size=32, num_layers=2, rnn_type="gru", **base),
    )
    # 001 Sec. 2.1 studies K = 2, 5 and 10 speaker groups.
    for k in (2, 5, 10):
        register_gate_preset(
            f"speaker-gate-32x2-k{k}-8k",
            dict(name="speaker_gate", num_classes=k, embedding_size=32, num_layers=2,
                 rnn_type="gru", **base),
        )


_speaker_presets()

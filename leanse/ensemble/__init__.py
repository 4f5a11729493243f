"""Sparse mixtures of local experts: gates, speaker embeddings and the sparse ensemble.

Paper 000 (Sivaraman & Kim 2020): an RNN gate picks one specialist per utterance by SNR bin or
gender. Paper 001 (Sivaraman & Kim 2021): the gate is a speaker embedding ``f`` (Siamese-trained)
followed by a classifier ``g`` over k-means speaker groups. Importing this package registers the
``sparse_ensemble`` model, its presets, and the gate presets.
"""

from leanse.ensemble.gates import (
    GATE_PRESETS,
    GATE_REGISTRY,
    Gate,
    RNNGate,
    UtteranceNet,
    build_gate,
    gate_bce_loss,
    register_gate,
    register_gate_preset,
)
from leanse.ensemble.speaker import (
    GroupClassifier,
    SiameseVerifier,
    SpeakerEmbedding,
    SpeakerGate,
    VerificationPair,
    speaker_groups,
    speaker_means,
    verification_pairs,
)
from leanse.ensemble.sparse import (
    MODES,
    SparseEnsemble,
    count_parameters,
    generalist_comparison,
)

__all__ = [
    "GATE_PRESETS",
    "GATE_REGISTRY",
    "MODES",
    "Gate",
    "GroupClassifier",
    "RNNGate",
    "SiameseVerifier",
    "SparseEnsemble",
    "SpeakerEmbedding",
    "SpeakerGate",
    "UtteranceNet",
    "VerificationPair",
    "build_gate",
    "count_parameters",
    "gate_bce_loss",
    "generalist_comparison",
    "register_gate",
    "register_gate_preset",
    "speaker_groups",
    "speaker_means",
    "verification_pairs",
]

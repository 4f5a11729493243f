"""Models. Importing this package registers every model and preset."""

from leanse.models.base import (
    MODEL_REGISTRY,
    PRESETS,
    EnhancementModel,
    build_model,
    register_model,
    register_preset,
)
from leanse.models import mask_rnn  # noqa: F401  (registers mask_rnn and its presets)
from leanse.models import dprnn  # noqa: F401  (dprnn_tasnet)
from leanse.models import groupcomm  # noqa: F401  (groupcomm_dprnn_tasnet)
from leanse.models import bloom  # noqa: F401  (bloom_net, resnet_tasnet)
from leanse.ensemble import sparse as _sparse  # noqa: F401,E402  (sparse_ensemble, gates)

__all__ = [
    "MODEL_REGISTRY",
    "PRESETS",
    "EnhancementModel",
    "build_model",
    "register_model",
    "register_preset",
]
from leanse.models import compression_baselines  # noqa: F401,E402  (fdnn, lstm_map, tcnn, gcrn)

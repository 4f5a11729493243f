"""Models. Importing this package registers its models and presets; the sparse ensemble
(:mod:`leanse.ensemble.sparse`) registers itself on the first :func:`build_model` /
:func:`model_presets` (see :data:`~leanse.models.base.MODEL_PLUGINS`)."""

from leanse.models.base import (
    MODEL_REGISTRY,
    PRESETS,
    EnhancementModel,
    build_model,
    load_model_plugins,
    model_presets,
    register_model,
    register_preset,
)
from leanse.models import mask_rnn  # noqa: F401  (registers mask_rnn and its presets)
from leanse.models import dprnn  # noqa: F401  (dprnn_tasnet)
from leanse.models import groupcomm  # noqa: F401  (groupcomm_dprnn_tasnet)
from leanse.models import bloom  # noqa: F401  (bloom_net, resnet_tasnet)
from leanse.models import compression_baselines  # noqa: F401  (fdnn, lstm_map, tcnn, gcrn)

__all__ = [
    "MODEL_REGISTRY",
    "PRESETS",
    "EnhancementModel",
    "build_model",
    "load_model_plugins",
    "model_presets",
    "register_model",
    "register_preset",
]

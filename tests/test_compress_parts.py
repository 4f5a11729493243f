"""Scoring each part of a compressed multi-part model (000's ensemble, 003's BLOOM-Net)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from leanse.compress.parts import ensemble_routing
from leanse.models import build_model

torch.set_num_threads(1)


def test_routing_counts_the_specialists_that_really_ran():
    """000 eq. 3: with hard gating exactly one specialist runs per utterance, the one the gate
    picks; soft gating (eq. 4, fine-tuning only) runs all K. The count comes from hooks, so a
    compressed ensemble that silently ran every specialist would be caught."""
    torch.manual_seed(0)
    model = build_model("tiny-sparse-ensemble").eval()
    with torch.no_grad():  # a gate that always answers specialist 2
        for parameter in model.gate.parameters():
            parameter.zero_()
        model.gate.dense.bias[2] = 5.0
    rng = np.random.default_rng(0)
    mixtures = [SimpleNamespace(noisy=rng.standard_normal(4000).astype(np.float32)) for _ in range(3)]
    assert ensemble_routing(model, mixtures) == {"picked": [2, 2, 2], "ran": [1, 1, 1]}

    model.mode = "soft"
    model._routed = lambda wav, routing: model._soft(wav, torch.ones(len(wav), model.num_experts) / 4)
    assert ensemble_routing(model, mixtures)["ran"] == [4, 4, 4]  # a dense run is seen as one
    assert model.mode == "soft"  # left as it was

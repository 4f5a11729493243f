"""The `causal` option of the time-domain models (002, 003) really is causal: the output up to a
time does not change when the input after it changes (up to one encoder window of framing)."""

from __future__ import annotations

import pytest
import torch

from leanse.models import build_model


@pytest.mark.parametrize("preset", ["tiny-bloom", "tiny-resnet-tasnet", "tiny-dprnn-tasnet", "tiny-groupcomm"])
def test_causal_model_output_does_not_depend_on_future_input(preset: str):
    torch.manual_seed(0)
    t0 = 5000
    changed = {}
    for causal in (True, False):
        model = build_model({"preset": preset, "causal": causal}).eval()
        wav = torch.randn(2, 8000)
        future_changed = wav.clone()
        future_changed[:, t0:] = torch.randn(2, 8000 - t0)
        with torch.no_grad():
            diff = (model(wav) - model(future_changed)).abs()
        # One encoder window of look-ahead is inherent to framing.
        changed[causal] = diff[:, : t0 - model.kernel_size].max().item()
        assert diff[:, t0:].max() > 0
    assert changed[True] == 0.0
    assert changed[False] > 0  # the check can tell: the non-causal model looks ahead

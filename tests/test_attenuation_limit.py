"""An attenuation limit on the mask RNN (DeepFilterNet's ``--atten-lim``): no bin is attenuated by
more than the limit, offline and streaming alike, and without a limit the model is unchanged."""

from __future__ import annotations

import pytest
import torch

from leanse.errors import ConfigError
from leanse.models import build_model

CONFIG = {"preset": "tiny-mask-rnn", "rnn_type": "gru", "features": "log_power"}


def build(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({**CONFIG, **overrides}).eval()
    with torch.no_grad():  # push the mask towards 0 so the floor matters
        model.dense.bias.fill_(-8.0)
    return model


def test_no_bin_is_attenuated_by_more_than_the_limit():
    magnitude = torch.rand(2, 50, build().stft.num_bins)  # [B, N, F]
    with torch.no_grad():
        plain = build().estimate_mask(magnitude)
        limited = build(attenuation_limit_db=12.0).estimate_mask(magnitude)
    floor = 10 ** (-12 / 20)
    assert plain.min() < 0.01  # the unlimited mask attenuates far more than 12 dB here
    assert limited.min() >= floor - 1e-7
    torch.testing.assert_close(limited, floor + (1 - floor) * plain)


def test_the_limit_streams_exactly_like_offline():
    model = build(attenuation_limit_db=15.0)
    x = 0.3 * torch.randn(2001, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        offline = model(x[None])[0]
    streamer = model.streamer()
    streamed = torch.cat([streamer.feed(x[i : i + 97]) for i in range(0, len(x), 97)] + [streamer.flush()])
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)


def test_the_limit_is_kept_in_the_config_and_adds_no_weights():
    limited = build(attenuation_limit_db=12.0)
    assert limited.config["attenuation_limit_db"] == 12.0
    assert build_model(limited.config).attenuation_limit_db == 12.0
    assert sum(p.numel() for p in limited.parameters()) == sum(p.numel() for p in build().parameters())


@pytest.mark.parametrize("bad", [0.0, -6.0])
def test_a_limit_that_is_not_a_positive_number_of_db_is_refused(bad):
    with pytest.raises(ConfigError, match="attenuation_limit_db"):
        build(attenuation_limit_db=bad)

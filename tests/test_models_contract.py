"""The contract every registered model preset keeps (like Asteroid's ``_default_test_model``).

Parametrised over :data:`FAST_PRESETS` -- every registered preset that builds in about a second
(at most :data:`MAX_PARAMS` weights) -- which other tests import to run their own checks over the
same models (``from test_models_contract import FAST_PRESETS``): output shape and sample rate,
config round-trip, checkpoint round-trip bit-exact, causality where a model declares it,
determinism.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.models import MODEL_REGISTRY, build_model, model_presets

#: "Builds in a second": the paper-size LSTMs and ensembles (up to 115 M weights) take several.
MAX_PARAMS = 3_000_000


def _meta_params(name: str) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation work
        return sum(p.numel() for p in build_model(name).parameters())


#: Every registered preset that builds in about a second, sorted.
FAST_PRESETS = sorted(name for name in model_presets() if _meta_params(name) <= MAX_PARAMS)
SECONDS = 0.25  # short: the paper-size DPRNNs run ~8000 frames a second of audio


def _build(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model({"preset": name, **overrides}).eval()


def _input(model: torch.nn.Module, batch: int = 2, seconds: float = SECONDS) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(batch, int(seconds * model.sample_rate), generator=generator)


def test_the_shared_list_covers_every_small_preset_and_every_model_kind():
    assert len(FAST_PRESETS) >= 50
    kinds = {model_presets()[name].get("name") for name in FAST_PRESETS}
    assert kinds == set(MODEL_REGISTRY)  # every registered model class is under contract


@pytest.mark.parametrize("name", FAST_PRESETS)
def test_output_shape_and_sample_rate(name):
    model = _build(name)
    assert model.sample_rate in (8000, 16000)
    wav = _input(model)
    with torch.no_grad():
        out = model(wav)
    sources = int(getattr(model, "num_sources", 1))
    expected = (2, sources, wav.shape[-1]) if sources > 1 else tuple(wav.shape)
    assert tuple(out.shape) == expected and out.dtype == wav.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", FAST_PRESETS)
def test_config_round_trip_rebuilds_the_same_architecture(name):
    model = _build(name)
    rebuilt = build_model(model.config)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", FAST_PRESETS)
def test_checkpoint_round_trip_is_bit_exact(name, tmp_path):
    model = _build(name)
    save_checkpoint(model, tmp_path / "best", {"preset": name})
    loaded = load_checkpoint(tmp_path / "best")
    assert type(loaded) is type(model) and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    wav = _input(model)
    with torch.no_grad():
        assert torch.equal(loaded(wav), model(wav))


@pytest.mark.parametrize("name", FAST_PRESETS)
def test_determinism_same_seed_same_weights_same_output(name):
    first, second = _build(name, seed=3), _build(name, seed=3)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key
    wav = _input(first)
    with torch.no_grad():
        out = first(wav)
        assert torch.equal(first(wav), out)  # no state carried from one call to the next
        assert torch.equal(second(wav), out)


CAUSAL_PRESETS = [name for name in FAST_PRESETS
                  if "causal" in inspect.signature(MODEL_REGISTRY[model_presets()[name]["name"]]).parameters]


@pytest.mark.parametrize("name", CAUSAL_PRESETS)
def test_a_model_declared_causal_does_not_look_at_future_input(name):
    """With ``causal=True`` the output up to a time does not change when the input after it does
    (up to one encoder window, inherent to framing); the non-causal model does look ahead, so the
    check can tell the two apart."""
    changed = {}
    for causal in (True, False):
        model = _build(name, causal=causal)
        wav = _input(model)
        t0 = int(0.6 * wav.shape[-1])
        future_changed = wav.clone()
        future_changed[:, t0:] = torch.randn(2, wav.shape[-1] - t0, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            diff = (model(wav) - model(future_changed)).abs()
        changed[causal] = diff[..., : t0 - model.kernel_size].max().item()
        assert diff[..., t0:].max() > 0
    assert changed[True] == 0.0
    assert changed[False] > 0

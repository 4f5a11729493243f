"""Packed compressed checkpoints: compact sparse positions, bit-exact round trip, bad files."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.compress import Pruner, quantize_model
from leanse.compress.packed import save_packed
from leanse.compress.positions import decode_positions, encode_positions
from leanse.errors import CheckpointError
from leanse.models import build_model

torch.set_num_threads(1)


def _entropy_bits_per_nonzero(density: float) -> float:
    h = -(density * math.log2(density) + (1 - density) * math.log2(1 - density))
    return h / density


@pytest.mark.parametrize("density", [0.5, 0.1, 0.01])
def test_rice_positions_round_trip_near_the_entropy_bound(density: float):
    rng = np.random.default_rng(0)
    occupied = rng.random((300, 200)) < density
    code = encode_positions(occupied)
    assert code.mode == "rice"
    assert np.array_equal(decode_positions(code), occupied)
    nonzeros = int(occupied.sum())
    bound = nonzeros * _entropy_bits_per_nonzero(density) / 8
    assert code.nbytes() <= 1.06 * bound + 16  # Rice: within a few % of H(rho) / rho
    assert code.nbytes() < occupied.size / 8 or density >= 0.5  # below a bitmap when sparse


def test_structured_positions_cost_one_bit_per_group():
    occupied = np.zeros((512, 64), bool)
    occupied[::7] = True  # whole groups alive
    code = encode_positions(occupied)
    assert code.mode == "groups" and code.nbytes() == 512 // 8
    assert np.array_equal(decode_positions(code), occupied)
    occupied[0, 3] = False  # one hole inside a live group: gaps inside the live groups
    code = encode_positions(occupied)
    assert code.mode == "groups_rice" and code.nbytes() < 512 // 8 + 40
    assert np.array_equal(decode_positions(code), occupied)
    assert encode_positions(np.ones((3, 4), bool)).nbytes() == 0


def _compressed(preset: str, sparsity: float, bits: int, structured: bool = False):
    torch.manual_seed(0)
    model = build_model(preset).eval()
    pruner = Pruner(model)
    if structured:
        pruner.prune_groups(sparsity)
    else:
        pruner.prune(sparsity)
    return model, quantize_model(model, bits, max_iter=30)


def test_packed_checkpoint_round_trips_bit_exact(tmp_path):
    model, packed = _compressed("lstm-mask-128x2", 0.9, 5)
    save_packed(model, tmp_path / "packed", packed, meta={"pipeline": "test"})
    loaded = load_checkpoint(tmp_path / "packed")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(wav), loaded(wav))
    assert loaded.checkpoint_meta == {"pipeline": "test"}


@pytest.mark.parametrize("sparsity,bits,limit", [(0.9, 8, 1.6), (0.99, 5, 1.5)])
def test_file_bytes_near_eq11_and_far_below_a_bitmap(tmp_path, sparsity, bits, limit):
    """004 Eq. (11) counts no positions; the file must. With a bitmap the file of a 99 %-sparse
    model is ~4x Eq. (11); with Rice-coded gaps it stays close (the entropy of random positions,
    H(rho)/rho bits per nonzero, is the floor: ~4.7 bits at 90 %, ~8.1 at 99 %)."""
    model, packed = _compressed("lstm-mask-128x2", sparsity, bits)
    folder = save_packed(model, tmp_path / "p", packed)
    file_bytes = (folder / "model.safetensors").stat().st_size
    eq11 = packed.eq11_bytes()
    sizes = json.loads((folder / "leanse.json").read_text())["packed"]["sizes"]
    assert sizes["file_bytes"] == file_bytes and sizes["eq11_bytes"] == eq11
    assert file_bytes <= limit * eq11
    bitmaps = sum(math.ceil(math.prod(q.shape) / 8) for q in packed.tensors.values())
    positions = sum(q.positions.nbytes() for q in packed.tensors.values())
    assert positions < bitmaps / 2
    dense = build_model("lstm-mask-128x2")
    dense_bytes = sum(t.numel() * 4 for t in dense.state_dict().values())
    assert dense_bytes / file_bytes > 8


def test_structured_model_positions_are_nearly_free(tmp_path):
    model, packed = _compressed("tiny-tcnn", 0.5, 4, structured=True)
    for q in packed.tensors.values():  # at most one bit per 004 group (kernel / column)
        assert q.positions.nbytes() <= math.ceil(q.positions.shape[0] / 8)
    folder = save_packed(model, tmp_path / "p", packed)
    loaded = load_checkpoint(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values()))


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_truncated_tampered_and_foreign_packed_files(tmp_path):
    model, packed = _compressed("tiny-mask-rnn", 0.9, 4)
    folder = save_packed(model, tmp_path / "a", packed)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()

    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert "truncated" in _one_line(err)

    tampered = bytearray(data)
    tampered[-10] ^= 0xFF
    weights.write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert "tampered" in _one_line(err)

    weights.write_bytes(data)
    other, other_packed = _compressed("tiny-mask-rnn", 0.5, 3)
    other_folder = save_packed(other, tmp_path / "b", other_packed)
    shutil.copy(other_folder / "model.safetensors", weights)  # weights of another packed model
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert "another packed checkpoint" in _one_line(err)

    weights.write_bytes(data)
    document = json.loads((folder / "leanse.json").read_text())
    first = next(iter(document["packed"]["tensors"]))
    document["packed"]["tensors"][first]["count"] += 5  # header edited by hand
    (folder / "leanse.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert first in _one_line(err)

    dense_folder = save_checkpoint(build_model("tiny-fdnn"), tmp_path / "dense")
    shutil.copy(other_folder / "leanse.json", dense_folder / "leanse.json")  # foreign model
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(dense_folder)
    _one_line(err)


def test_saving_refuses_weights_changed_after_quantization(tmp_path):
    model, packed = _compressed("tiny-mask-rnn", 0.5, 3)
    with torch.no_grad():
        model.dense.weight.add_(0.01)
    with pytest.raises(CheckpointError, match="quantize again"):
        save_packed(model, tmp_path / "x", packed)


TINY_FAMILIES = ["tiny-mask-rnn", "tiny-dprnn-tasnet", "tiny-groupcomm", "tiny-bloom",
                 "tiny-resnet-tasnet", "tiny-sparse-ensemble", "tiny-fdnn", "tiny-lstm-map",
                 "tiny-tcnn", "tiny-gcrn"]


@pytest.mark.parametrize("preset", TINY_FAMILIES)
def test_every_model_family_prunes_quantizes_and_round_trips_packed(tmp_path, preset):
    """C1's last two steps on every leanse model family (the ensembles' specialists and gate,
    GroupComm / DPRNN, BLOOM, the 004 models): the packed checkpoint reloads bit-exact."""
    model, packed = _compressed(preset, 0.8, 4)
    folder = save_packed(model, tmp_path / "p", packed)
    loaded = load_checkpoint(folder)
    state = model.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, state[name]), name
    wav = torch.randn(1, model.sample_rate // 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(wav), loaded(wav))


def test_profile_of_a_packed_checkpoint_reports_the_file_size(tmp_path, capsys):
    from leanse.cli import main

    model, packed = _compressed("tiny-mask-rnn", 0.9, 4)
    folder = save_packed(model, tmp_path / "p", packed)
    assert main(["profile", str(folder), "--no-rtf", "--json"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["bytes"] == (folder / "model.safetensors").stat().st_size

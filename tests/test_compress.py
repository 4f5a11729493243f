"""leanse.compress: 004's regularisers, sensitivity analysis, pruning and k-means quantization."""

from __future__ import annotations

import copy
import math
from typing import Callable

import pytest
import torch
from torch import nn

from leanse.complexity import count_macs, count_parameters, model_bytes
from leanse.compress import (
    Pruner,
    format_table,
    group_lasso_penalty,
    group_matrix,
    iterative_prune,
    l1_penalty,
    prunable_tensors,
    pruning_sensitivity,
    quantization_sensitivity,
    quantize_model,
    sgl_proximal_step_,
    sparse_group_lasso,
    shrink_model,
    sparsity_report,
)
from leanse.errors import ConfigError
from leanse.models import build_model

torch.set_num_threads(1)


def _wav(seconds: float = 0.1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, int(16000 * seconds), generator=g) * 0.1


def _model(preset: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(preset).eval()


# --- regularisers ---------------------------------------------------------------------------

def _toy() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.0, 3.0]]))
        net[2].weight.copy_(torch.tensor([[4.0, 0.0]]))
    return net


def test_prunable_tensors_and_groups():
    lstm = nn.LSTM(3, 5, num_layers=2)
    names = [s.name for s in prunable_tensors(lstm)]
    assert names == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    spec = prunable_tensors(lstm)[0]
    rows = group_matrix(spec.weight, spec, by="output")
    assert rows.shape == (5, 4 * 3)  # one group per hidden unit, all four gates
    assert torch.equal(rows[1, :3], spec.weight[1]) and torch.equal(rows[1, 3:6], spec.weight[6])
    conv_t = prunable_tensors(nn.ConvTranspose1d(4, 6, 3))[0]
    assert group_matrix(conv_t.weight, conv_t, by="output").shape == (6, 12)
    assert not any("bias" in s.name for s in prunable_tensors(_model("tiny-tcnn")))


def test_l1_penalty_value_and_gradient():
    net = _toy()
    value = l1_penalty(net, 0.5)  # |W| sum = 1+2+3+4 = 10 over 4 nonzeros
    assert value.item() == pytest.approx(0.5 * 10 / 4)
    value.backward()
    expected = 0.5 / 4 * torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    assert torch.allclose(net[0].weight.grad, expected)
    assert net[0].bias.grad is None


def test_group_lasso_and_sgl_values_and_gradient():
    net = _toy()
    # groups (output rows): ||(1,-2)||, ||(0,3)||, ||(4,0)||; p_g = 2; n(G) = 3
    expected = 0.3 / 3 * math.sqrt(2) * (math.sqrt(5) + 3 + 4)
    value = group_lasso_penalty(net, 0.3, by="output")
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    g = net[0].weight.grad[0]
    assert torch.allclose(g, 0.3 / 3 * math.sqrt(2) * torch.tensor([1.0, -2.0]) / math.sqrt(5))
    total = sparse_group_lasso(_toy(), None, 0.5, 0.3, by="output")
    assert total.item() == pytest.approx(0.5 * 10 / 4 + expected, rel=1e-6)


def test_default_groups_are_004_columns_and_kernels():
    """004 Sec. II-B: a column of an FC / recurrent matrix (gates concatenated), one kernel of a
    convolution."""
    lstm = nn.LSTM(3, 5)
    ih = prunable_tensors(lstm)[0]
    cols = group_matrix(ih.weight, ih)
    assert cols.shape == (3, 4 * 5)  # one group per input: its 20 weights over the four gates
    assert torch.equal(cols[2], ih.weight[:, 2])
    conv = prunable_tensors(nn.Conv2d(2, 3, (2, 5)))[0]
    kernels = group_matrix(conv.weight, conv)
    assert kernels.shape == (6, 10) and torch.equal(kernels[4], conv.weight[2, 0].reshape(-1))
    conv_t = prunable_tensors(nn.ConvTranspose1d(4, 6, 3))[0]
    assert group_matrix(conv_t.weight, conv_t).shape == (24, 3)
    # toy: columns (1, 0), (-2, 3) of the first layer and (4), (0) of the second; p_g = 2, 2, 1, 1
    expected = 0.3 / 4 * (math.sqrt(2) * (1 + math.sqrt(13)) + 1 * 4)
    assert group_lasso_penalty(_toy(), 0.3).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError, match="group by"):
        group_matrix(ih.weight, ih, by="rows")


def test_structured_pruning_removes_whole_004_groups_and_iterates():
    model = _model("tiny-lstm-map")
    pruner, history = iterative_prune(model, lambda m: 0.0, lambda m, p: None, ratios=0.5,
                                      tolerance=1.0, max_iterations=2, structured=True)
    assert len(history) == 2
    for spec in pruner.tensors:
        cols = group_matrix(spec.weight.detach(), spec)
        dead = (cols == 0).all(dim=1)
        # every group is either whole or gone, and 75 % of the groups are gone
        assert bool(((cols != 0).all(dim=1) | dead).all())
        assert int(dead.sum()) == pytest.approx(0.75 * cols.shape[0], abs=1)
    _, rows = iterative_prune(_model("tiny-lstm-map"), lambda m: 0.0, lambda m, p: None,
                              ratios=0.5, tolerance=1.0, max_iterations=1, structured=True,
                              by="output")
    with pytest.raises(ConfigError):
        iterative_prune(_model("tiny-fdnn"), lambda m: 0.0, lambda m, p: None, 0.5, 1.0,
                        structured=True, by="rows")


def test_group_lasso_zeroes_groups_on_toy_regression():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x[:, :2] @ torch.tensor([[1.0], [-1.0]])  # only inputs 0 and 1 matter
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sgl_proximal_step_(net, None, 0.05, 0.0, 2.0, by="output")
    norms = group_matrix(net[0].weight, prunable_tensors(net)[0], by="output").norm(dim=1)
    assert int((norms == 0).sum()) >= 4  # whole hidden neurons switched off
    assert loss.item() < 0.5


# --- sensitivity ----------------------------------------------------------------------------

def _reference_evaluate(model: nn.Module):
    wav = _wav()
    with torch.no_grad():
        reference = model(wav)

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return -float(((m(wav) - reference) ** 2).mean())

    return evaluate


def test_sensitivity_restores_weights_and_loose_tolerance_allows_everything():
    model = _model("tiny-fdnn")
    evaluate = _reference_evaluate(model)
    state = copy.deepcopy(model.state_dict())
    table = pruning_sensitivity(model, evaluate, tolerance=1e-7, ratios=[0.0, 0.2, 0.5, 0.8, 1.0])
    assert set(table) == {"net.0.weight", "net.2.weight", "net.4.weight"}
    for k, v in model.state_dict().items():  # every tensor restored
        assert torch.equal(v, state[k])
    loose = pruning_sensitivity(model, evaluate, tolerance=1e9, ratios=[0.5, 1.0])
    assert all(r["chosen"] == 1.0 for r in loose.values())


def _column_toy() -> tuple[nn.Module, Callable[[nn.Module], float]]:
    """Linear(4 -> 2) read by inputs whose features 2 and 3 are always 0: its columns 2, 3
    (small norms) cost nothing, columns 0, 1 (large norms) carry the output."""
    net = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, -4.0, 0.1, 0.2], [5.0, 6.0, -0.1, 0.3]]))
    x = torch.tensor([[1.0, 2.0, 0.0, 0.0], [-1.0, 0.5, 0.0, 0.0]])
    reference = net(x).detach()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return -float(((m(x) - reference) ** 2).mean())

    return net, evaluate


def test_structured_sensitivity_picks_the_ratio_before_the_first_drop_over_tolerance():
    """Algorithm 2: the 25 % and 50 % steps remove the two harmless columns (drop 0); 75 % takes
    a carrying column: the chosen ratio is 50 %, and 100 % is never tried."""
    net, evaluate = _column_toy()
    table = pruning_sensitivity(net, evaluate, tolerance=1e-6,
                                ratios=[0.0, 0.25, 0.5, 0.75, 1.0], structured=True)
    row = table["0.weight"]
    assert row["chosen"] == 0.5
    assert row["ratios"] == [0.0, 0.25, 0.5, 0.75]
    assert row["drops"][:3] == [0.0, 0.0, 0.0] and row["drops"][3] > 1e-6
    # unstructured (Algorithm 1) removes weights of the smallest |w|: the same four go first
    flat = pruning_sensitivity(net, evaluate, 1e-6, ratios=[0.0, 0.5, 0.625], structured=False)
    assert flat["0.weight"]["chosen"] == 0.5


def test_quantization_sensitivity_picks_the_first_bitwidth_under_tolerance():
    """Algorithm 3 on tensors with exactly 1, 2 and 4 distinct nonzero values: k-means with K
    clusters is exact from K = #values on, and coarser bit-widths hurt, so the chosen bits are
    0, 1 and 2 -- the first under the tolerance, not the largest tried."""
    class Parallel(nn.Sequential):  # three layers reading the same input
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([layer(x) for layer in self], dim=-1)

    net = Parallel(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False),
                   nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[1].weight.copy_(torch.tensor([0.5, -1.0]).repeat(8).reshape(4, 4))
        net[2].weight.copy_(torch.tensor([0.5, -1.0, 2.0, 3.0]).repeat(4).reshape(4, 4))
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    reference = net(x).detach()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return -float(((m(x) - reference) ** 2).mean())

    table = quantization_sensitivity(net, evaluate, tolerance=1e-9, max_bits=6)
    assert {name: row["chosen"] for name, row in table.items()} == {
        "0.weight": 0, "1.weight": 1, "2.weight": 2}
    assert table["2.weight"]["bits"] == [0, 1, 2]
    assert all(d > 1e-9 for d in table["2.weight"]["drops"][:2])
    # the 2K > N stop: 3 distinct nonzeros cannot use K = 4, so K = 2 (1 bit) is taken
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight.view(-1)[:3] = torch.tensor([1.0, 2.0, 4.0])
    assert quantization_sensitivity(net, evaluate, 1e-9, 6)["0.weight"]["chosen"] == 1
    with pytest.raises(ConfigError, match="bits"):
        quantize_model(net, 9)


# --- unstructured pruning -------------------------------------------------------------------

def test_unstructured_pruning_reaches_sparsity_and_masks_persist():
    model = _model("tiny-fdnn")
    pruner = Pruner(model)
    pruner.prune(0.5)
    assert pruner.sparsity() == pytest.approx(0.5, abs=0.01)
    pruner.prune(0.5)  # of the remaining weights
    assert pruner.sparsity() == pytest.approx(0.75, abs=0.01)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pruner.attach(opt)
    model.train()
    loss = model(_wav()).pow(2).mean()
    loss.backward()
    opt.step()
    assert pruner.sparsity() == pytest.approx(0.75, abs=0.01)
    for spec in pruner.tensors:
        assert not spec.weight[~pruner.masks[spec.name]].any()
    report = sparsity_report(model)
    assert report["params"] == count_parameters(model)
    assert report["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert Pruner.from_zeros(model).sparsity() == pytest.approx(pruner.sparsity())


def test_per_tensor_ratios_and_lstm_masks():
    model = _model("tiny-lstm-map")
    pruner = Pruner(model)
    pruner.prune({"rnn.weight_ih_l0": 0.9})
    rep = sparsity_report(model)["tensors"]
    assert rep["rnn.weight_ih_l0"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert rep["rnn.weight_hh_l0"]["sparsity"] == 0.0
    assert torch.isfinite(model(_wav())).all()


def test_iterative_prune_stops_on_quality_drop_and_keeps_last_good_model():
    model = _model("tiny-fdnn")
    evaluate = _reference_evaluate(model)
    calls = []
    pruner, history = iterative_prune(model, evaluate, lambda m, p: calls.append(1),
                                      ratios=0.3, tolerance=1e-6, max_iterations=6)
    assert history and len(calls) == len(history)
    assert not history[-1].accepted  # something eventually hurts the toy score beyond 1e-6
    accepted = [h for h in history if h.accepted]
    expected = accepted[-1].sparsity if accepted else 0.0
    assert pruner.sparsity() == pytest.approx(expected)
    _, history = iterative_prune(_model("tiny-fdnn"), lambda m: 0.0, lambda m, p: None,
                                 ratios=0.5, tolerance=1.0, target_sparsity=0.7)
    assert history[-1].sparsity >= 0.7 and len(history) == 2


# --- structured pruning ---------------------------------------------------------------------

def test_structured_removal_of_dead_fdnn_neurons_is_exact():
    """Layer 1 has 5 dead units (3 constant rows folded onward, 2 unread), layer 2 has 2: each
    loses 2, so that one ``hidden_size`` still describes the model."""
    model = _model("tiny-fdnn")
    wav = _wav()
    with torch.no_grad():
        model.net[0].weight[[1, 5, 7]] = 0  # dead rows: constant relu(bias) folded onward
        model.net[2].weight[:, [3, 4]] = 0  # neurons feeding nothing
        model.net[2].weight[[0, 9]] = 0
        before_out = model(wav)
    macs_before = count_macs(model, seconds=0.1)
    info = shrink_model(model)
    assert info["units_removed"] == 2 * 2 and info["reloadable"]
    assert info["params_after"] < info["params_before"] == count_parameters(
        _model("tiny-fdnn"))
    assert count_macs(model, seconds=0.1) < macs_before
    assert model.net[0].out_features == 30 and model.net[2].out_features == 30
    with torch.no_grad():
        assert torch.allclose(model(wav), before_out, atol=1e-6)


def test_structured_pruning_then_removal_fdnn():
    model = _model("tiny-fdnn")
    pruner = Pruner(model)
    pruner.prune_groups({"net.0.weight": 0.5, "net.2.weight": 0.25}, by="output")
    with torch.no_grad():
        pruned_out = model(_wav())
    info = shrink_model(model)
    assert info["units_removed"] == 8 + 8  # the fewer dead units of the two layers, in each
    assert model.hidden_size == 24 and model.config["hidden_size"] == 24 and info["reloadable"]
    with torch.no_grad():
        assert torch.allclose(model(_wav()), pruned_out, atol=1e-6)


def _kill_lstm_units(model: nn.Module, layer: int, units: list[int]) -> None:
    """Zero every weight row of ``units`` in ``layer`` (all gates), as structured pruning of
    both of the layer's tensors would; ``prune_groups`` then zeroes their biases."""
    with torch.no_grad():
        for kind in ("weight_ih", "weight_hh"):
            getattr(model.rnn, f"{kind}_l{layer}").reshape(4, 32, -1)[:, units] = 0
    Pruner.from_zeros(model).prune_groups(0.0, by="output")


def test_structured_removal_of_lstm_units_is_exact():
    model = _model("tiny-lstm-map")
    pruner = Pruner(model)
    pruner.prune_groups({"rnn.weight_ih_l0": 0.25}, by="output")
    dead = (model.rnn.weight_ih_l0.reshape(4, 32, -1).abs().sum(dim=(0, 2)) == 0)
    units = dead.nonzero().flatten().tolist()
    assert len(units) == 8
    _kill_lstm_units(model, 0, units)
    _kill_lstm_units(model, 1, units)
    assert not model.rnn.bias_ih_l0.reshape(4, 32)[:, units].any()
    wav = _wav()
    with torch.no_grad():
        before_out = model(wav)
    params = count_parameters(model)
    info = shrink_model(model)
    assert info["units_removed"] == 16
    assert isinstance(model.rnn, nn.LSTM) and model.rnn.hidden_size == 24
    assert model.hidden_size == 24 and count_parameters(model) < params
    with torch.no_grad():
        assert torch.allclose(model(wav), before_out, atol=1e-5)
    rebuilt = build_model(model.config).eval()  # uniform widths: config rebuilds the shrunk model
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt(wav), before_out, atol=1e-5)


def test_lstm_unit_dead_in_one_layer_only_stays_because_the_config_has_one_width():
    model = _model("tiny-lstm-map")
    _kill_lstm_units(model, 1, [0, 3, 30])
    assert shrink_model(model)["units_removed"] == 0 and model.rnn.hidden_size == 32
    _kill_lstm_units(model, 0, [7])
    wav = _wav()
    with torch.no_grad():
        before_out = model(wav)
    macs = count_macs(model, seconds=0.1)
    assert shrink_model(model)["units_removed"] == 2  # one unit per layer
    assert model.rnn.hidden_size == 31 and model.dense.in_features == 31
    assert count_macs(model, seconds=0.1) < macs
    with torch.no_grad():
        assert torch.allclose(model(wav), before_out, atol=1e-5)


# --- quantization ---------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 4])
def test_quantization_distinct_values_and_packed_size(bits):
    model = _model("tiny-fdnn")
    dense_bytes = model_bytes(model)
    packed = quantize_model(model, bits)
    specs = prunable_tensors(model)
    quantized_params = 0
    for spec in specs:
        values = torch.unique(spec.weight.detach())
        assert values.numel() <= 2**bits
        q = packed.tensors[spec.name]
        assert torch.equal(q.unpack(), spec.weight.detach())
        n = spec.weight.numel()
        assert q.nbytes() == math.ceil(n * bits / 8) + 4 * 2**bits
        quantized_params += n
    other = sum(t.numel() * t.element_size() for k, t in model.state_dict().items()
                if k not in packed.tensors)
    assert model_bytes(model) == sum(q.nbytes() for q in packed.tensors.values()) + other
    assert model_bytes(model) < dense_bytes - quantized_params * (32 - bits) / 8 * 0.95


def test_quantization_of_pruned_tensor_keeps_zeros_and_codes_positions():
    model = _model("tiny-lstm-map")
    Pruner(model).prune(0.8)
    zeros = {s.name: s.weight.detach() == 0 for s in prunable_tensors(model)}
    packed = quantize_model(model, 3)
    for spec in prunable_tensors(model):
        w = spec.weight.detach()
        assert torch.equal(w == 0, zeros[spec.name])
        assert torch.unique(w[w != 0]).numel() <= 8
        q = packed.tensors[spec.name]
        nz = int((w != 0).sum())
        positions = q.nbytes() - (math.ceil(nz * 3 / 8) + 4 * 8)
        assert positions == q.positions.nbytes()
        assert 0 < positions < math.ceil(w.numel() / 8)  # less than a bitmap at 80 % sparsity
        assert torch.equal(q.unpack(), w)
    assert torch.isfinite(model(_wav())).all()


def test_quantize_gcrn_and_tcnn_run():
    for preset in ("tiny-tcnn", "tiny-gcrn"):
        model = _model(preset)
        before = model_bytes(model)
        quantize_model(model, 4, max_iter=20)
        assert model_bytes(model) < before / 4
        with torch.no_grad():
            assert torch.isfinite(model(_wav())).all()

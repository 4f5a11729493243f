"""Physical shrinking: whole units leave every tensor together, the function and config hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.complexity import count_parameters
from leanse.compress.cost import sparse_macs, weight_macs
from leanse.compress.shrink import dead_rnn_units, shrink_model
from leanse.models import build_model

torch.set_num_threads(1)


def _silence_readers(rnn: nn.RNNBase, consumer: torch.Tensor, units: list[int]) -> None:
    """Zero every column that reads ``units`` (004 column groups): their own recurrent columns
    in every direction and the columns of whatever reads the layer."""
    dirs = 2 if rnn.bidirectional else 1
    hidden = rnn.hidden_size
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}{'_reverse' if d else ''}"
                getattr(rnn, "weight_hh" + sfx)[:, units] = 0
                readers = [consumer] if layer == rnn.num_layers - 1 else [
                    getattr(rnn, f"weight_ih_l{layer + 1}{'_reverse' if d2 else ''}")
                    for d2 in range(dirs)]
                for w in readers:
                    w[:, [u + d * hidden for u in units]] = 0


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_mask_rnn_units_leave_every_tensor_and_the_checkpoint_reloads(tmp_path, rnn_type):
    torch.manual_seed(0)
    model = build_model(dict(name="mask_rnn", rnn_type=rnn_type, hidden_size=16, num_layers=2,
                             n_fft=64, hop_length=16)).eval()
    _silence_readers(model.rnn, model.dense.weight, [1, 5, 7])
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        before = model(wav)
    macs_before = weight_macs(model, 1.0)
    info = shrink_model(model)
    assert info["units_removed"] == 6 and info["reloadable"]
    assert model.rnn.hidden_size == 13 and model.config["hidden_size"] == 13
    assert model.dense.in_features == 13
    gates = 4 if rnn_type == "lstm" else 3
    assert model.rnn.weight_ih_l0.shape == (gates * 13, 33)
    assert model.rnn.weight_hh_l1.shape == (gates * 13, 13)
    assert weight_macs(model, 1.0) < macs_before
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)
    folder = save_checkpoint(model, tmp_path / "shrunk")
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(folder)(wav), before, rtol=1e-5, atol=1e-6)


class _BiRNN(nn.Module):
    def __init__(self, rnn_type: type[nn.RNNBase]) -> None:
        super().__init__()
        self.hidden_size = 8
        self.rnn = rnn_type(6, 8, num_layers=2, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.rnn(x)[0])


@pytest.mark.parametrize("rnn_type", [nn.LSTM, nn.GRU])
def test_bidirectional_units_go_in_both_directions_together(rnn_type):
    torch.manual_seed(0)
    model = _BiRNN(rnn_type).eval()
    _silence_readers(model.rnn, model.dense.weight, [2, 6])
    with torch.no_grad():  # unit 4 is unread only in the forward direction: it must stay
        model.rnn.weight_hh_l0[:, 4] = 0
        model.rnn.weight_ih_l1[:, 4] = 0
        model.rnn.weight_ih_l1_reverse[:, 4] = 0
    dead = dead_rnn_units(model.rnn, model.dense.weight)
    assert dead[0].nonzero().flatten().tolist() == [2, 6]
    x = torch.randn(2, 10, 6)
    with torch.no_grad():
        before = model(x)
    info = shrink_model(model)
    assert info["units_removed"] == 4 and model.rnn.hidden_size == 6
    assert model.rnn.weight_ih_l1.shape[1] == 12 and model.dense.in_features == 12
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


def test_layers_lose_the_same_number_of_units_so_the_config_stays_true():
    torch.manual_seed(0)
    model = build_model("tiny-lstm-map").eval()
    with torch.no_grad():  # layer 0: units 0, 3, 9 unread; layer 1: only unit 4
        model.rnn.weight_hh_l0[:, [0, 3, 9]] = 0
        model.rnn.weight_ih_l1[:, [0, 3, 9]] = 0
        model.rnn.weight_hh_l1[:, [4]] = 0
        model.dense.weight[:, [4]] = 0
    wav = torch.randn(1, 3000)
    with torch.no_grad():
        before = model(wav)
    info = shrink_model(model)
    assert info["units_removed"] == 2 and model.hidden_size == 31 and info["reloadable"]
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)


def test_fdnn_chain_shrinks_with_dead_rows_folded():
    torch.manual_seed(0)
    model = build_model("tiny-fdnn").eval()
    with torch.no_grad():
        model.net[0].weight[[1, 5]] = 0  # constant units: relu(bias) folded into the next bias
        model.net[2].weight[:, [3, 4]] = 0  # unread units
        model.net[2].weight[[0, 9, 11]] = 0
        model.net[4].weight[:, [9]] = 0
    wav = torch.randn(1, 3000)
    with torch.no_grad():
        before = model(wav)
    params = count_parameters(model)
    info = shrink_model(model)
    assert info["units_removed"] == 2 * 3 and model.hidden_size == 29 and info["reloadable"]
    assert count_parameters(model) < params
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)


def test_nonzero_macs_skip_zero_weights():
    """004 Table III: MACs of the nonzero weights. Zeroing half of one Linear's weights removes
    exactly half of that layer's multiply-accumulates from the count."""
    model = build_model("tiny-fdnn").eval()
    full = sparse_macs(model, 1.0)
    assert full["nonzero"] == full["dense"]
    frames = 16000 // 160 + 1  # 004 framing: hop 160, 160 samples of padding on each side
    with torch.no_grad():
        model.net[2].weight.view(-1)[::2] = 0
    half = model.net[2].weight.numel() // 2
    sparse = sparse_macs(model, 1.0)
    assert sparse["dense"] == full["dense"]
    assert full["dense"] - sparse["nonzero"] == half * frames
    assert weight_macs(model, 1.0, nonzero=True) == weight_macs(model, 1.0) - half * frames


# --------------------------------------------------------------------------------------------
# Convolutional chains and dual-path RNNs: 004's structured pruning, then the channels go


def _trained_looking(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affines, so that dropping or folding a channel
    through a norm would show if it were wrong."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                m.bias.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
    return model.eval()


@pytest.mark.parametrize("preset, width_keys", [
    ("tiny-tcnn", ("encoder_channels", "tcm_hidden")),
    ("tiny-gcrn", ("encoder_channels", "decoder_channels")),
    ("tiny-dprnn-tasnet", ("hidden_size",)),
    ("tiny-groupcomm", ("hidden_size",)),
])
def test_structurally_pruned_models_shrink_for_real_and_reload(tmp_path, preset, width_keys):
    """004 Sec. II-B: with kernel / column groups pruned (Algorithm 2, 90 % of each tensor's
    groups), whole channels and units become dead; removing them leaves the function unchanged,
    and the shrunk model has fewer parameters and MACs, and reloads from its config."""
    from leanse.complexity import count_macs
    from leanse.compress.pruning import Pruner

    torch.manual_seed(0)
    model = _trained_looking(build_model(preset))
    Pruner.from_zeros(model).prune_groups(0.9)
    config = model.config
    wav = torch.randn(1, model.sample_rate // 2)
    with torch.no_grad():
        masked = model(wav)
    params, macs = count_parameters(model), count_macs(model, 0.5)
    info = shrink_model(model)
    assert info["reloadable"] and info["params_after"] == count_parameters(model) < params
    assert count_macs(model, 0.5) < macs
    assert any(model.config[key] != config[key] for key in width_keys)
    with torch.no_grad():
        torch.testing.assert_close(model(wav), masked, rtol=1e-4, atol=1e-5)
    reloaded = load_checkpoint(save_checkpoint(model, tmp_path / "shrunk"))
    assert count_parameters(reloaded) == count_parameters(model)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(wav), masked, rtol=1e-4, atol=1e-5)


def _unread_tcnn_encoder(model: nn.Module, k: int, channel: int, skip: bool = True) -> None:
    """Zero the kernels that read encoder ``k``'s ``channel``: encoder ``k + 1`` and (``skip``)
    the decoder layer that takes it as a skip (the last inputs of its concatenation)."""
    with torch.no_grad():
        model.encoder[k + 1].weight[:, channel] = 0
        if skip:
            decoder = model.decoder[len(model.encoder) - 1 - k]
            decoder.weight[decoder.in_channels - model.encoder_channels[k] + channel] = 0


def test_tcnn_encoder_channel_goes_only_when_its_skip_reader_is_zero_too():
    torch.manual_seed(0)
    model = _trained_looking(build_model("tiny-tcnn"))
    _unread_tcnn_encoder(model, 5, 2, skip=False)  # the decoder still reads it through the skip
    with torch.no_grad():  # decoder 0 (also encoder_channels[5] wide): channel 4 unread by decoder 1
        model.decoder[1].weight[4] = 0
    assert shrink_model(model)["units_removed"] == 0
    _unread_tcnn_encoder(model, 5, 2)
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        before = model(wav)
    info = shrink_model(model)
    assert info["reloadable"] and model.encoder_channels[5] == 7
    assert model.encoder[5].out_channels == 7 and model.decoder[0].out_channels == 7
    assert model.decoder[1].in_channels == 7 + 7
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)


def test_tcnn_residual_channel_goes_only_when_no_branch_reads_it():
    """The last encoder channels x 4 bins are the residual stream of the temporal convolution
    module: every block reads and adds to it, the first decoder layer reads it twice (stream and
    skip). A channel read by any of them stays; unread by all, it leaves the writers too."""
    torch.manual_seed(0)
    model = _trained_looking(build_model("tiny-tcnn"))
    width = model.widths[-1]
    channel = 3
    features = list(range(channel * width, (channel + 1) * width))
    with torch.no_grad():
        for block in model.tcm:
            block.inp.weight[:, features] = 0
        model.decoder[0].weight[channel] = 0  # the stream part of the first decoder's input
    assert shrink_model(model)["units_removed"] == 0  # its skip part still reads the channel
    with torch.no_grad():
        model.decoder[0].weight[8 + channel] = 0
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        before = model(wav)
    assert shrink_model(model)["reloadable"]
    assert model.encoder_channels[-1] == 7 and model.tcm[0].out.out_channels == 7 * width
    assert model.decoder[0].in_channels == 2 * 7
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)


def test_tcnn_zero_depthwise_kernel_is_a_constant_folded_into_the_next_bias():
    torch.manual_seed(0)
    model = _trained_looking(build_model("tiny-tcnn"))
    with torch.no_grad():
        for block in model.tcm:
            block.depthwise.weight[[1, 6]] = 0
            block.depthwise.bias[[1, 6]] = 0.7  # BN2(PReLU(0.7)) != 0: a constant, not silence
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        before = model(wav)
    assert shrink_model(model)["reloadable"] and model.tcm_hidden == 30
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)


def test_gcrn_decoders_lose_the_same_number_of_channels():
    """Both decoders share ``decoder_channels``: when the real decoder can spare 2 channels of
    block 1 and the imaginary one only 1, each loses 1."""
    torch.manual_seed(0)
    model = _trained_looking(build_model("tiny-gcrn"))
    with torch.no_grad():
        for decoder, channels in ((model.decoder_real, [2, 5]), (model.decoder_imag, [0])):
            for conv in (decoder.blocks[2].conv, decoder.blocks[2].gate):
                conv.weight[channels] = 0
    wav = torch.randn(1, 4000)
    with torch.no_grad():
        before = model(wav)
    assert shrink_model(model)["reloadable"] and model.decoder_channels[1] == 7
    assert model.decoder_real.blocks[1].conv.out_channels == 7
    assert model.decoder_imag.blocks[2].gate.in_channels == 7 + 8
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)


def test_sparse_ensemble_shrinks_each_specialist_and_the_gate(tmp_path):
    """000/001: C2 compresses every specialist and the gate; each one loses what it can spare
    (they may end up different sizes: the ensemble's config then lists them one by one)."""
    from leanse.compress.pruning import Pruner

    torch.manual_seed(0)
    model = build_model("tiny-sparse-ensemble").eval()
    Pruner.from_zeros(model).prune_groups(0.5)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        before = model(wav)
    gate_units = model.gate.hidden_size
    info = shrink_model(model)
    assert info["reloadable"] and info["params_after"] < info["params_before"]
    assert model.gate.hidden_size < gate_units
    assert all(s.hidden_size < 64 for s in model.specialists)
    reloaded = load_checkpoint(save_checkpoint(model, tmp_path / "shrunk"))
    with torch.no_grad():
        torch.testing.assert_close(model(wav), before, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(reloaded(wav), before, rtol=1e-5, atol=1e-6)

"""Paper 002 (GroupComm): DPRNN-TasNet and GroupComm-DPRNN-TasNet reproduce Table 2."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from leanse.complexity import count_macs, count_parameters
from leanse.errors import ConfigError
from leanse.models import build_model
from leanse.models.dprnn import ChunkedCumulativeLayerNorm, overlap_add, segment
from leanse.models.groupcomm import GroupCommDPRNNTasNet

UNITS = {"K": 1e3, "M": 1e6, "G": 1e9}


def as_printed(value: float, printed: str) -> str:
    """``value`` written the way the paper wrote ``printed`` (same unit, same decimals)."""
    number, unit = printed[:-1], printed[-1]
    decimals = len(number.split(".")[1]) if "." in number else 0
    return f"{value / UNITS[unit]:.{decimals}f}{unit}"


# 002 Table 2: preset, model size, MACs on 4-second inputs.
TABLE2 = [
    ("dprnn-tasnet", "2.6M", "22.1G"),
    ("groupcomm-k2-n128-l4", "2.6M", "43.4G"),
    ("groupcomm-k4-n128-l4", "663.0K", "22.4G"),
    ("groupcomm-k8-n128-l4", "175.5K", "11.9G"),
    ("groupcomm-k16-n128-l4", "51.9K", "6.6G"),
    ("groupcomm-k16-n128-l6", "73.5K", "9.6G"),
    ("groupcomm-k16-n256-l2", "100.7K", "12.4G"),
    ("groupcomm-k16-n256-l4", "183.9K", "23.7G"),
    ("groupcomm-k32-n128-l6", "26.0K", "5.7G"),
    ("groupcomm-k32-n128-l10", "37.6K", "9.1G"),
    ("groupcomm-k32-n256-l2", "38.7K", "7.2G"),
    ("groupcomm-k32-n256-l4", "60.3K", "13.2G"),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Thousands of tiny LSTM sequences: one thread is as fast, and much faster when the two
    # cores are shared with other work.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("preset, size, macs", TABLE2, ids=[row[0] for row in TABLE2])
def test_every_table2_row_has_the_published_size_and_macs(preset: str, size: str, macs: str):
    model = build_model(preset)
    assert model.sample_rate == 16000 and model.num_sources == 2
    assert as_printed(count_parameters(model), size) == size
    assert as_printed(count_macs(model, 4.0, convention="paper"), macs) == macs


def test_dprnn_tasnet_baseline_has_exactly_2616065_parameters():
    assert count_parameters(build_model("dprnn-tasnet")) == 2_616_065


def test_groupcomm_k4_has_exactly_the_counted_parameters():
    # 8,448 filterbank + 4 blocks x 3 (BLSTM(32, 64) + Linear(128, 32) + norm) + 2,113 mask.
    assert count_parameters(build_model("groupcomm-k4-n128-l4")) == 662_977


def test_groupcomm_lstms_read_m_features_with_2m_units_and_there_is_no_bottleneck():
    model = build_model("groupcomm-k16-n128-l6")
    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    assert len(lstms) == 6 * 3  # inter-group, intra-chunk, inter-chunk per block
    assert {(m.input_size, m.hidden_size, m.bidirectional) for m in lstms} == {(8, 16, True)}
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    # Only the encoder and the one mask layer shared by all groups: Conv2d(M, 2M, 1).
    assert [tuple(c.weight.shape) for c in convs] == [(128, 1, 32), (16, 8, 1, 1)]


def test_segmentation_puts_every_frame_in_exactly_two_chunks():
    frames = torch.randn(1, 3, 4002)  # 4 s at 16 kHz, 2 ms window, 1 ms hop
    chunks = segment(frames, 100)
    assert chunks.shape == (1, 3, 100, 82)
    torch.testing.assert_close(overlap_add(chunks, 4002), 2 * frames)


@pytest.mark.parametrize("preset", ["tiny-dprnn-tasnet", "tiny-groupcomm"])
@pytest.mark.parametrize("num_sources", [1, 2])
def test_enhancement_gives_b_t_and_separation_gives_b_s_t(preset: str, num_sources: int):
    model = build_model({"preset": preset, "num_sources": num_sources}).eval()
    for length in (8000, 4321):
        with torch.no_grad():
            out = model(torch.randn(3, length))
        expected = (3, length) if num_sources == 1 else (3, num_sources, length)
        assert out.shape == expected


def test_causal_mode_makes_the_time_rnns_unidirectional():
    model = build_model({"preset": "tiny-groupcomm", "causal": True})
    block = model.blocks[0]
    assert block.group_comm.rnn.rnn.bidirectional  # across groups, not time
    assert not block.dual_path.intra_rnn.rnn.bidirectional
    assert not block.dual_path.inter_rnn.rnn.bidirectional


def test_chunked_cumulative_norm_uses_statistics_of_past_frames_only():
    torch.manual_seed(0)
    chunks = segment(torch.randn(2, 3, 37), 8)  # [B, C, 2T, S]
    norm = ChunkedCumulativeLayerNorm(3)
    out = norm(chunks)
    hop = 4
    _, _, chunk_size, num_chunks = chunks.shape
    frame = torch.arange(chunk_size)[:, None] + hop * torch.arange(num_chunks)[None, :]
    for p, s in [(0, 0), (5, 2), (7, num_chunks - 1), (3, 4)]:
        past = chunks[:, :, frame <= frame[p, s]]  # [B, C, elements up to this frame]
        mean = past.mean(dim=(1, 2))
        var = past.var(dim=(1, 2), unbiased=False)
        expected = (chunks[:, :, p, s] - mean[:, None]) / torch.sqrt(var[:, None] + norm.eps)
        torch.testing.assert_close(out[:, :, p, s], expected, atol=1e-5, rtol=1e-4)


def test_groups_must_divide_the_filters():
    with pytest.raises(ConfigError, match="num_groups"):
        build_model({"preset": "groupcomm-k16-n128-l4", "num_groups": 12})


def test_config_rebuilds_the_same_model():
    model = build_model("groupcomm-k32-n256-l2")
    assert isinstance(model, GroupCommDPRNNTasNet)
    rebuilt = build_model(model.config)
    assert rebuilt.config == model.config
    assert count_parameters(rebuilt) == count_parameters(model)

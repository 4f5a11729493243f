"""`leanse profile` prints the papers' published sizes and costs (FIDELITY.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _profile(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "leanse.cli", "profile", *args, "--json", "--no-rtf"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "preset, params",
    [("lstm-mask-1024x2", 15_226_369), ("gru-mask-256x2-8k", 1_118_721), ("lstm-mask-512x2", 4_467_713)],
)
def test_profile_prints_the_published_sizes_as_json(preset, params):
    profile = _profile(preset, "--seconds", "2")
    assert profile["params"] == params
    assert profile["macs_per_second"] == pytest.approx(profile["macs"] / 2)
    assert profile["bytes"] >= 4 * params


@pytest.mark.parametrize("blocks, params, macs_g", [(1, 284_931, 0.53), (3, 556_551, 1.07), (6, 963_981, 1.87)])
def test_bloom_profile_with_blocks_gives_the_run_time_cost_of_that_exit(blocks, params, macs_g):
    profile = _profile("bloom-l6", "--blocks", str(blocks), "--seconds", "1")
    assert profile["params"] == 1_335_186  # all exits are stored
    assert profile["effective_params"] == params  # only blocks 1..l and exit l run
    assert round(profile["separator_masker_macs"] / 1e9, 2) == macs_g  # 003 Table 2


def test_groupcomm_profile_reproduces_a_table2_row():
    profile = _profile("groupcomm-k16-n128-l4", "--seconds", "4")
    assert round(profile["params"] / 1e3, 1) == 51.9
    assert round(profile["macs"] / 1e9, 1) == 6.6
    assert profile["model"] == "groupcomm-k16-n128-l4"

"""Sparse mixture of local experts (papers 000 and 001): gates, speaker groups, the ensemble.

The tests read as the papers' claims; models are tiny (8 kHz, n_fft 256) unless a test checks a
published parameter count.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.ensemble import (
    GroupClassifier,
    RNNGate,
    SiameseVerifier,
    SparseEnsemble,
    SpeakerEmbedding,
    SpeakerGate,
    build_gate,
    count_parameters,
    gate_bce_loss,
    generalist_comparison,
    speaker_groups,
    verification_pairs,
)
from leanse.errors import ConfigError, LeanseError
from leanse.losses import neg_si_sdr
from leanse.models import build_model
from leanse.models.mask_rnn import MaskRNN

SR = 8000
STFT = dict(n_fft=256, hop_length=64, sample_rate=SR)
TINY_GATE = dict(name="rnn_gate", rnn_type="lstm", hidden_size=8, num_layers=1, num_classes=4, **STFT)
TINY_SPECIALIST = dict(name="mask_rnn", rnn_type="lstm", hidden_size=8, num_layers=1, **STFT)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny_ensemble(mode: str = "hard", num_classes: int = 4) -> SparseEnsemble:
    gate = {**TINY_GATE, "num_classes": num_classes}
    return SparseEnsemble(gate=gate, specialist=TINY_SPECIALIST, mode=mode).eval()


def force_gate(ensemble: SparseEnsemble, logits: torch.Tensor):
    """Make the (still running) gate return fixed logits, to control the routing."""
    return ensemble.gate.register_forward_hook(lambda module, inputs, output: logits.clone())


def count_calls(ensemble: SparseEnsemble) -> list[list[int]]:
    """Batch size of every call of every specialist, via forward hooks."""
    calls: list[list[int]] = [[] for _ in ensemble.specialists]
    for k, expert in enumerate(ensemble.specialists):
        expert.register_forward_hook(lambda m, inputs, out, k=k: calls[k].append(inputs[0].shape[0]))
    return calls


def one_hot_logits(routing: list[int], num_classes: int = 4, margin: float = 3.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(routing), num_classes).float() * margin


# -- published sizes (FIDELITY.md, sections 000 and 001) ------------------------------------------


@pytest.mark.parametrize(
    "preset, params",
    [("snr-gate-128x2", 461_828), ("gender-gate-16x2", 36_194), ("speaker-embed-32x2-8k", 58_848)],
)
def test_gate_and_embedding_presets_have_the_published_sizes(preset: str, params: int) -> None:
    assert count_parameters(build_gate(preset)) == params


def test_000_gates_have_the_papers_configuration() -> None:
    snr, gender = build_gate("snr-gate-128x2"), build_gate("gender-gate-16x2")
    assert (snr.num_classes, snr.hidden_size, snr.num_layers, snr.sample_rate) == (4, 128, 2, 16000)
    assert (gender.num_classes, gender.hidden_size, gender.rnn_type) == (2, 16, "lstm")
    assert snr.stft.num_bins == 513


def test_k5_ensemble_of_h256_specialists_has_5_593_605_specialist_parameters() -> None:
    ensemble = build_model("speaker-ensemble-k5-gru-256x2-8k")
    counts = ensemble.parameter_counts()
    assert counts["specialists"] == [1_118_721] * 5
    assert counts["specialists_total"] == 5_593_605  # "5.6 M", 001 Sec. 4
    assert counts["gate"] == 58_848 + 32 * 5 + 5


def test_k10_h64_ensemble_saves_48_7_percent_and_one_specialist_93_3_percent_vs_h512() -> None:
    ensemble = build_model("speaker-ensemble-k10-gru-64x2-8k")
    generalist = build_model("gru-mask-512x2-8k")
    claims = generalist_comparison(ensemble, generalist)
    assert round(100 * claims["total_reduction"], 1) == 48.7  # paper: "48 %"
    assert round(100 * claims["effective_reduction"], 1) == 93.3  # paper: "94 %"
    assert round(100 * claims["effective_reduction_without_gate"], 1) == 95.0


def test_hard_gated_ensemble_effectively_uses_the_gate_plus_one_specialist_when_measured() -> None:
    complexity = pytest.importorskip("leanse.complexity")
    ensemble = build_model("speaker-ensemble-k10-gru-64x2-8k").eval()
    generalist = build_model("gru-mask-512x2-8k")
    profile = complexity.profile_model(ensemble, seconds=0.5, rtf=False)
    assert profile["params"] == 59_178 + 10 * 169_473
    assert profile["effective_params"] == 59_178 + 169_473  # speaker gate (K=10) + one specialist
    one_specialist = complexity.count_macs(ensemble.specialists[0], 0.5)
    assert profile["macs"] == complexity.count_macs(ensemble.gate, 0.5) + one_specialist
    saved = complexity.reduction(profile, complexity.profile_model(generalist, 0.5, rtf=False))
    assert round(100 * saved["params"], 1) == 48.7
    assert round(100 * saved["effective_params"], 1) == 93.3
    hard = complexity.profile_model(ensemble, 0.5, rtf=False, labels=torch.tensor([3]))
    assert hard["effective_params"] == 59_178 + 169_473  # hard mode ignores labels
    ensemble.mode = "oracle"  # the oracle choice runs no gate
    oracle = complexity.profile_model(ensemble, 0.5, rtf=False, labels=torch.tensor([3]))
    assert oracle["effective_params"] == 169_473 and oracle["macs"] == one_specialist


# -- routing: hard (000 eq. 3), soft (000 eq. 4-5), oracle ----------------------------------------


def test_hard_gated_ensemble_runs_exactly_one_specialist_per_utterance() -> None:
    ensemble = tiny_ensemble("hard")
    calls = count_calls(ensemble)
    force_gate(ensemble, one_hot_logits([0, 2, 2, 0]))
    with torch.no_grad():
        out = ensemble(torch.randn(4, SR // 4))
    assert out.shape == (4, SR // 4)
    assert calls == [[2], [], [2], []]  # specialists 1 and 3 never run
    assert ensemble.last_routing.tolist() == [0, 2, 2, 0]


def test_hard_output_equals_the_chosen_specialist_run_alone_on_that_utterance() -> None:
    ensemble = tiny_ensemble("hard")
    routing = [3, 1, 3, 0, 1]
    force_gate(ensemble, one_hot_logits(routing))
    wav = torch.randn(5, SR // 4)
    with torch.no_grad():
        out = ensemble(wav)
        for b, k in enumerate(routing):
            alone = ensemble.specialists[k](wav[b : b + 1])
            torch.testing.assert_close(out[b : b + 1], alone, rtol=1e-5, atol=1e-6)


def test_hard_routing_follows_the_gates_argmax_without_forcing() -> None:
    ensemble = tiny_ensemble("hard")
    wav = torch.randn(6, SR // 4)
    with torch.no_grad():
        ensemble(wav)
        assert ensemble.last_routing.tolist() == ensemble.gate.predict(wav).tolist()


def test_soft_gating_with_lambda_10_approaches_hard_gating_for_well_separated_logits() -> None:
    ensemble = tiny_ensemble("soft")
    logits = one_hot_logits([1, 3, 0], margin=2.0)  # lambda * margin = 20 -> p_k* ~ 1 - 6e-9
    force_gate(ensemble, logits)
    wav = torch.randn(3, SR // 4)
    with torch.no_grad():
        soft = ensemble(wav)
        ensemble.mode = "hard"
        hard = ensemble(wav)
        ensemble.mode, ensemble.scale = "soft", 1.0  # the plain softmax does not saturate
        plain = ensemble(wav)
    torch.testing.assert_close(soft, hard, rtol=0, atol=1e-6)
    assert (plain - hard).abs().max() > 100 * (soft - hard).abs().max()


def test_soft_output_is_the_probability_weighted_mask_sum_of_eq_4() -> None:
    ensemble = tiny_ensemble("soft")
    ensemble.scale = 1.0  # well-spread weights, so every specialist matters
    wav = torch.randn(2, SR // 4)
    with torch.no_grad():
        out = ensemble(wav)
        p = torch.softmax(ensemble.gate(wav), dim=-1)  # [B, K]
        spec = ensemble.specialists[0].stft(wav)  # [B, F, N]
        magnitude = spec.abs().transpose(1, 2)  # [B, N, F]
        masks = torch.stack([e.estimate_mask(magnitude) for e in ensemble.specialists], 1)
        mask = torch.einsum("bk,bknf->bnf", p, masks)  # Y = sum_k p_k M^(k)
        expected = ensemble.specialists[0].stft.inverse(spec * mask.transpose(1, 2), wav.shape[-1])
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(ensemble.last_probabilities.sum(-1), torch.ones(2))


def test_soft_gating_is_differentiable_wrt_gate_and_all_specialists() -> None:
    ensemble = tiny_ensemble("soft").train()
    ensemble.scale = 1.0
    wav, clean = torch.randn(2, SR // 4), torch.randn(2, SR // 4)
    neg_si_sdr(ensemble(wav), clean).backward()
    for name, module in [("gate", ensemble.gate)] + [
        (f"specialist {k}", e) for k, e in enumerate(ensemble.specialists)
    ]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_oracle_mode_routes_by_label_and_does_not_run_the_gate() -> None:
    ensemble = tiny_ensemble("oracle")
    calls = count_calls(ensemble)
    gate_calls = []
    ensemble.gate.register_forward_hook(lambda *args: gate_calls.append(1))
    wav = torch.randn(3, SR // 4)
    with torch.no_grad():
        out = ensemble(wav, labels=torch.tensor([1, 0, 1]))
        assert calls == [[1], [2], [], []] and not gate_calls
        torch.testing.assert_close(out[1:2], ensemble.specialists[0](wav[1:2]), rtol=1e-5, atol=1e-6)
    assert ensemble.last_routing.tolist() == [1, 0, 1]
    with pytest.raises(ConfigError, match="labels"):
        ensemble(wav)
    with pytest.raises(ConfigError, match="0..3"):
        ensemble(wav, labels=torch.tensor([0, 4, 1]))


# -- building, checking, saving -------------------------------------------------------------------


def test_checkpoint_round_trip_rebuilds_the_same_ensemble(tmp_path) -> None:
    ensemble = tiny_ensemble("hard")
    wav = torch.randn(3, SR // 4)
    with torch.no_grad():
        expected = ensemble(wav)
    save_checkpoint(ensemble, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, SparseEnsemble) and loaded.config == ensemble.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav), expected)
    rebuilt = build_model(ensemble.config)
    rebuilt.load_state_dict(ensemble.state_dict())
    assert rebuilt.config == ensemble.config


def test_from_parts_builds_the_naive_ensemble_from_pretrained_modules() -> None:
    gate = RNNGate(**{k: v for k, v in TINY_GATE.items() if k != "name"})
    experts = [MaskRNN(rnn_type="lstm", hidden_size=h, num_layers=1, **STFT) for h in (4, 8, 8, 12)]
    ensemble = SparseEnsemble.from_parts(gate, experts, mode="oracle").eval()
    assert ensemble.config["specialists"] is not None  # different sizes are kept apart
    wav = torch.randn(4, SR // 4)
    with torch.no_grad():
        out = ensemble(wav, labels=torch.tensor([0, 1, 2, 3]))
        for k, expert in enumerate(experts):
            torch.testing.assert_close(out[k : k + 1], expert(wav[k : k + 1]), rtol=1e-5, atol=1e-6)
    rebuilt = build_model(ensemble.config)
    assert [count_parameters(e) for e in rebuilt.specialists] == [count_parameters(e) for e in experts]


def test_specialist_count_must_equal_the_gates_k() -> None:
    with pytest.raises(ConfigError, match="K=4"):
        SparseEnsemble(gate=TINY_GATE, specialist=TINY_SPECIALIST, num_experts=3)
    with pytest.raises(ConfigError, match="K=4"):
        SparseEnsemble(gate=TINY_GATE, specialists=[TINY_SPECIALIST] * 5)
    with pytest.raises(ConfigError, match="K=4"):
        SparseEnsemble.from_parts(build_gate(TINY_GATE), [build_model(TINY_SPECIALIST)] * 2)


def test_gate_and_specialists_must_share_sample_rate_and_stft() -> None:
    with pytest.raises(ConfigError, match="Hz"):
        SparseEnsemble(gate=TINY_GATE, specialist={**TINY_SPECIALIST, "sample_rate": 16000})
    with pytest.raises(ConfigError, match="n_fft"):
        SparseEnsemble(gate=TINY_GATE, specialist={**TINY_SPECIALIST, "n_fft": 512})
    with pytest.raises(ConfigError, match="hop_length"):
        SparseEnsemble(gate=TINY_GATE, specialist={**TINY_SPECIALIST, "hop_length": 128})
    with pytest.raises(ConfigError, match="Hz"):  # 000's 16 kHz gate with 001's 8 kHz specialists
        build_model(dict(name="sparse_ensemble", gate="snr-gate-128x2", specialist="gru-mask-64x2-8k"))


def test_bad_mode_scale_and_gate_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="mode"):
        build_model(dict(name="sparse_ensemble", gate=TINY_GATE, specialist=TINY_SPECIALIST, mode="top2"))
    with pytest.raises(ConfigError, match="scale"):
        SparseEnsemble(gate=TINY_GATE, specialist=TINY_SPECIALIST, scale=0)
    with pytest.raises(ConfigError, match="not a classifier"):
        SparseEnsemble(gate="speaker-embed-32x2-8k", specialist="gru-mask-64x2-8k")
    with pytest.raises(ConfigError, match="unknown gate preset"):
        build_gate("snr-gate-999")


def test_importing_the_ensemble_package_first_registers_the_model() -> None:
    code = (
        "import leanse.ensemble; from leanse.models import MODEL_REGISTRY, PRESETS; "
        "assert 'sparse_ensemble' in MODEL_REGISTRY and 'tiny-sparse-ensemble' in PRESETS"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- gates ------------------------------------------------------------------------------------------


def test_rnn_gate_returns_one_logit_vector_per_utterance() -> None:
    gate = build_gate(TINY_GATE)
    wav = torch.randn(3, SR // 2)
    logits = gate(wav)
    assert logits.shape == (3, 4)
    torch.testing.assert_close(gate.probabilities(wav, scale=10.0), torch.softmax(10 * logits, -1))
    assert build_gate(gate.config).config == gate.config


def test_gate_bce_loss_is_binary_cross_entropy_on_the_softmax() -> None:
    logits, labels = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    expected = torch.nn.functional.binary_cross_entropy(
        torch.softmax(logits, -1), torch.nn.functional.one_hot(labels, 4).float()
    )
    torch.testing.assert_close(gate_bce_loss(logits, labels), expected)


# -- speaker-informed gating (001) -------------------------------------------------------------------


def test_speaker_embedding_is_the_last_frame_of_the_gru() -> None:
    embed = SpeakerEmbedding(hidden_size=6, num_layers=2, **STFT)
    wav = torch.randn(2, SR // 4)
    hidden, h_n = embed.rnn(embed.magnitude(wav))
    torch.testing.assert_close(embed(wav), h_n[-1])
    assert embed(wav).shape == (2, 6)


def test_siamese_verifier_scores_pairs_with_sigmoid_of_inner_product() -> None:
    embed = SpeakerEmbedding(hidden_size=6, num_layers=1, **STFT)
    verifier = SiameseVerifier(embed)
    a, b = torch.randn(4, SR // 4), torch.randn(4, SR // 4)
    same = torch.tensor([1, 0, 1, 0])
    expected = torch.sigmoid((embed(a) * embed(b)).sum(-1))
    torch.testing.assert_close(verifier.probability(a, b), expected)
    loss = verifier.loss(a, b, same)
    torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy(expected, same.float()))
    loss.backward()
    assert all(p.grad is not None for p in embed.parameters())
    assert count_parameters(verifier) == count_parameters(embed)  # one f for both inputs


def test_verification_pairs_are_balanced_and_seeded() -> None:
    speakers = ["a"] * 5 + ["b"] * 3 + ["c"] * 1 + ["d"] * 4
    utterances = [f"{s}{i}" for i, s in enumerate(speakers)]
    speaker_of = dict(zip(utterances, speakers))
    pairs = verification_pairs(utterances, speakers, num_pairs=200, rng=7)
    counts = Counter(p.same for p in pairs)
    assert counts[True] == counts[False] == 100
    for pair in pairs:
        assert pair.first != pair.second
        assert (speaker_of[pair.first] == speaker_of[pair.second]) == pair.same
    assert pairs == verification_pairs(utterances, speakers, 200, np.random.default_rng(7))
    assert pairs != verification_pairs(utterances, speakers, 200, rng=8)
    with pytest.raises(LeanseError, match="two speakers"):
        verification_pairs(["x", "y"], ["a", "a"], 4, rng=0)


def _clustered_speakers(num_speakers: int = 12, centres: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    means = 10 * torch.randn(centres, 32, generator=generator)
    return {
        f"spk{s:02d}": means[s % centres] + 0.1 * torch.randn(5, 32, generator=generator)
        for s in range(num_speakers)
    }


def test_kmeans_speaker_groups_are_deterministic_and_cover_every_speaker() -> None:
    embeddings = _clustered_speakers()
    groups = speaker_groups(embeddings, k=3, seed=0)
    assert set(groups) == set(embeddings)
    assert set(groups.values()) == {0, 1, 2}
    assert groups == speaker_groups(dict(reversed(list(embeddings.items()))), k=3, seed=0)
    # Speakers drawn around the same centre (index mod 3) share a group.
    for name, group in groups.items():
        assert group == groups[f"spk{int(name[3:]) % 3:02d}"]


def test_fewer_speakers_than_groups_is_a_clear_error() -> None:
    with pytest.raises(LeanseError, match="5 speaker groups from 3 speakers"):
        speaker_groups(_clustered_speakers(3), k=5, seed=0)


def test_speaker_gate_is_embedding_then_one_dense_layer() -> None:
    gate = build_gate("speaker-gate-32x2-k5-8k")
    assert isinstance(gate, SpeakerGate) and gate.num_classes == 5
    assert count_parameters(gate) == 58_848 + 32 * 5 + 5
    embed = SpeakerEmbedding(hidden_size=6, num_layers=1, **STFT)
    classifier = GroupClassifier(6, 3)
    small = SpeakerGate.from_parts(embed, classifier)
    wav = torch.randn(2, SR // 4)
    torch.testing.assert_close(small(wav), classifier(embed(wav)))
    small.freeze_embedding()
    assert not any(p.requires_grad for p in small.embedding.parameters())
    assert all(p.requires_grad for p in small.classifier.parameters())
    with pytest.raises(ConfigError, match="embeddings"):
        SpeakerGate.from_parts(embed, GroupClassifier(32, 3))

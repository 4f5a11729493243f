"""The real-speech tool chain: augmentation, log-power features, the spectral loss, DNSMOS, peers,
paired folders and bundled-model names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leanse import checkpoint, pretrained
from leanse.data.augment import AugmentOptions, Augmenter, lowpass
from leanse.data.devset import paired_mixtures
from leanse.data.mixing import Mixer, MixingOptions, example_rng
from leanse.data.records import NoiseRecording, Utterance
from leanse.errors import CheckpointError, ConfigError, CorpusError
from leanse.losses import compressed_spectral, si_sdr_spectral
from leanse.metrics import si_sdr
from leanse.models import build_model

RATE = 16000


def harmonic(seconds: float = 2.0, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 30))
    gate = (np.sin(2 * np.pi * 3 * t) > -0.2).astype(float)
    return (0.1 * wav * gate).astype(np.float32)


@pytest.fixture
def small_corpus(tmp_path):
    import soundfile as sf

    speech = tmp_path / "speech.wav"
    noise = tmp_path / "noise.wav"
    sf.write(speech, harmonic(3.0), RATE)
    sf.write(noise, (0.05 * np.random.default_rng(1).standard_normal(3 * RATE)).astype(np.float32), RATE)
    return [Utterance(str(speech), "s1", "M", 3.0)], [NoiseRecording(str(noise), "n", 3.0)]


def test_augmentation_is_reproducible_per_mixture_and_changes_what_it_says(small_corpus):
    speech, noise = small_corpus
    everything = AugmentOptions(speed=1, eq=1, reverb=1, bandlimit=1, gain=1, clip=1, rir_pool=2, t60=[0.2, 0.3])
    options = MixingOptions(segment_seconds=1.0, snrs=[5.0], augment=everything)
    mixer = Mixer(speech, noise, options)
    spec = mixer.draw(example_rng(0, "t", 0), "train-0-0")
    first, again = mixer.render(spec), mixer.render(spec)
    assert np.array_equal(first.noisy, again.noisy) and np.array_equal(first.clean, again.clean)
    assert {"speed", "eq", "rir", "lowpass_hz", "clip"} <= set(first.meta)
    plain = Mixer(speech, noise, MixingOptions(segment_seconds=1.0, snrs=[5.0])).render(spec)
    assert si_sdr(first.clean, plain.clean) < 10  # the target itself was coloured and reverberated
    # clipping touches the input only: the noisy peak is flattened, the target is not
    assert np.sum(np.abs(first.noisy) >= np.abs(first.noisy).max() - 1e-7) > 3


def test_augment_options_reject_probabilities_outside_0_1():
    with pytest.raises(ConfigError, match="data.augment.reverb"):
        AugmentOptions(reverb=1.5)


def test_lowpass_removes_content_above_the_cutoff_without_delay():
    wav = np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    out = lowpass(wav, 3000, RATE)
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(len(out), 1 / RATE)
    assert spectrum[freqs > 4500].sum() < 1e-3 * spectrum[freqs < 2500].sum()
    assert np.argmax(np.correlate(out[1000:3000], wav[1000:3000], "full")) == 1999  # lag 0


def test_log_power_features_make_the_mask_net_level_invariant_up_to_a_shift():
    model = build_model(dict(name="mask_rnn", rnn_type="gru", hidden_size=8, num_layers=1, n_fft=64,
                             hop_length=16, features="log_power"))
    assert model.config["features"] == "log_power"
    magnitude = torch.rand(1, 5, 33) + 0.1
    rebuilt = build_model(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.estimate_mask(magnitude), model.estimate_mask(magnitude))
    with pytest.raises(ConfigError, match="features"):
        build_model(dict(name="mask_rnn", features="mel"))


def test_compressed_spectral_loss_is_zero_for_a_perfect_estimate_and_level_independent():
    target = torch.from_numpy(harmonic(1.0))[None]
    noisy = target + 0.02 * torch.randn_like(target)
    assert compressed_spectral(target, target).item() < 1e-6
    loud, quiet = compressed_spectral(noisy * 10, target * 10), compressed_spectral(noisy, target)
    assert loud.item() == pytest.approx(quiet.item(), rel=0.05)
    assert si_sdr_spectral(noisy, target).item() > si_sdr_spectral(target, target).item()


def test_dnsmos_scores_a_clean_harmonic_signal_above_the_same_signal_in_noise():
    from leanse.metrics import dnsmos_score

    clean = harmonic(4.0)
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    a, b = dnsmos_score(clean, RATE), dnsmos_score(noisy, RATE)
    assert set(a) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    assert all(1.0 <= v <= 5.0 for v in (*a.values(), *b.values()))
    assert a["dnsmos_bak"] > b["dnsmos_bak"]


@pytest.mark.parametrize("name", ["rnnoise", "dfn3"])
def test_peers_are_delay_compensated_and_denoise(name):
    from leanse.peers import get_peer

    peer = get_peer(name)
    assert 0 < peer.delay_ms <= 40  # both run 10-ms frames with at most two frames of look-ahead
    clean = harmonic(3.0, seed=2)
    noise = 0.03 * np.random.default_rng(3).standard_normal(len(clean)).astype(np.float32)
    out = peer.enhance(clean + noise, RATE)
    assert out.shape == clean.shape
    # aligned output: the best lag between output and clean is 0 (within a sample of resampling)
    lags = range(-8, 9)
    scores = [np.dot(out[100 + lag : -100 + lag], clean[100:-100]) for lag in lags]
    assert abs(list(lags)[int(np.argmax(scores))]) <= 1
    # the pauses between "syllables" hold only noise: the peer must take most of it out
    t = np.arange(len(clean)) / RATE
    pauses = np.sin(2 * np.pi * 3 * t) < -0.4
    assert np.mean(out[pauses] ** 2) < 0.25 * np.mean(noise[pauses] ** 2)


def test_deepfilternet3_cost_is_counted_from_its_bundled_graphs():
    """DeepFilterNet3's paper (Schroeter et al. 2023, Table 1) gives 2.13 M parameters and 0.344
    GMAC/s; counting its bundled ONNX graphs must land there (the deep-filtering op outside the
    graphs is not counted), and RNNoise, which ships no graph, is not counted at all."""
    from leanse.peers import get_peer

    cost = get_peer("dfn3").counted_cost()
    assert round(cost["params"] / 1e6, 2) == 2.13
    assert 0.33e9 < cost["macs_per_second_paper"] < 0.36e9
    assert cost["macs_per_second_exact"] > cost["macs_per_second_paper"]
    assert get_peer("rnnoise").counted_cost() is None


def test_deepfilternet3_loads_its_model_before_a_timed_call():
    """libDF has no reset, so each file gets a fresh state (a model load); ``prepare`` makes them
    ahead, so that an RTF timing measures processing, not loading."""
    from leanse.peers import get_peer

    peer = get_peer("dfn3")
    peer.prepare(2)
    loads = []
    load = peer._create
    peer._create = lambda: loads.append(1) or load()
    frames = np.zeros(4800, np.float32)
    peer.process_48k(frames)
    peer.process_48k(frames)
    assert loads == []
    peer.process_48k(frames)
    assert loads == [1]


def test_paired_folder_needs_both_sides(tmp_path):
    (tmp_path / "noisy").mkdir()
    with pytest.raises(CorpusError, match="noisy/ and clean/"):
        list(paired_mixtures(tmp_path))


def test_a_bundled_name_resolves_like_a_checkpoint_folder(tmp_path, monkeypatch):
    model = build_model("tiny-mask-rnn")
    checkpoint.save_checkpoint(model, tmp_path / "leanse-test", meta={"summary": "a test model"})
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert checkpoint.checkpoint_folder("leanse-test") == tmp_path / "leanse-test"
    loaded = checkpoint.load_checkpoint("leanse-test")
    assert loaded.config == model.config
    with pytest.raises(CheckpointError, match="not a bundled model \\(leanse-test\\)"):
        checkpoint.checkpoint_folder("leanse-nope")
    rows = pretrained.describe_bundled()
    assert rows[0]["name"] == "leanse-test" and rows[0]["summary"] == "a test model"
    json.dumps(rows)


def test_manifest_corpus_takes_several_manifests_and_a_test_split(tmp_path):
    import soundfile as sf

    from leanse.data.datamodule import DataConfig, read_corpus

    for split in ("train", "dev"):
        for i in range(3):
            sf.write(tmp_path / f"{split}{i}.wav", harmonic(1.0, seed=i), RATE)
    (tmp_path / "a.csv").write_text("path,speaker,split\n" + "".join(f"train{i}.wav,a{i},train\n" for i in range(3)))
    (tmp_path / "b.csv").write_text("path,speaker,split\n" + "".join(f"dev{i}.wav,b{i},dev\n" for i in range(3)))
    noise = tmp_path / "noise" / "n"
    noise.mkdir(parents=True)
    sf.write(noise / "x.wav", harmonic(1.0), RATE)
    sf.write(noise / "y.wav", harmonic(1.0, seed=5), RATE)
    config = DataConfig(corpus="manifest", manifest=[str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
                        test_split="dev", noise_root=str(tmp_path), train_noise=["n"], test_noise=["n"], snrs=[0])
    corpus = read_corpus(config)
    assert {u.speaker for u in corpus.test} == {"b0", "b1", "b2"}
    assert {u.speaker for u in corpus.train + corpus.valid} == {"a0", "a1", "a2"}

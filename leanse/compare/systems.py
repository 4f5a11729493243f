"""What ``leanse compare`` and ``leanse serve`` can run: a MODEL spec -> a :class:`System`.

A spec is one of

* a checkpoint folder (or its ``model.safetensors`` / ``leanse.json``), or a bundled model name
  (``leanse-tiny``; ``leanse models`` lists them);
* any of those at an exit of a scalable model: ``RUN@l=2`` runs BLOOM-Net's first 2 blocks
  (the same ``blocks`` argument as ``enhance --blocks``);
* a peer: ``rnnoise``, ``dfn3``, ``noisereduce`` (:mod:`leanse.peers`);
* a packed compressed model (``leanse compress``), which is a checkpoint folder like any other;
* a file of another format, through :data:`LOADERS`: a small dispatch table (ONNX graphs from
  ``leanse export``); any other file gets a one-line error saying what to give instead.

Every system runs ``[B, T] -> [B, T]`` at ``sample_rate`` (the model interface that
:func:`leanse.evaluate.evaluate_model` scores), and knows its cost, taken from
:mod:`leanse.complexity` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from leanse.errors import ConfigError

#: ``SPEC@l=N``: a scalable model at exit ``N`` (its first ``N`` blocks).
EXIT_PATTERN = re.compile(r"^(?P<base>.+)@l=(?P<blocks>\d+)$")
#: Seconds of audio the MACs and RTF are counted on (MACs/s does not depend on it for these models).
COST_SECONDS = 4.0
REPEATS = 3  # timed passes of the RTF (median), after one warm-up


@dataclass
class System:
    """One row of a comparison: a runnable model, its label and what it costs."""

    spec: str  # what the user typed
    label: str  # the row's name in tables and plots
    model: Any  # [B, T] -> [B, T] at sample_rate (an EnhancementModel or a PeerModel)
    kind: str  # "leanse", "peer", or a plug-in format's name
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. a peer's compensated delay

    data_rate: int | None = None  # the rate of the files it is scored on, when not its own

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def runner(self) -> Any:
        """What runs on the data: the model itself, or the model behind soxr resampling from and
        back to :attr:`data_rate` (an 8-kHz model on 16-kHz files: it hears 0-4 kHz only)."""
        if self.data_rate is None or self.data_rate == self.sample_rate:
            return self.model
        return ResampledModel(self.model, self.data_rate)

    def enhance(self, wav: "Any") -> "Any":
        """``[T]`` numpy waveform at the data's rate -> enhanced ``[T]`` numpy waveform."""
        import numpy as np
        import torch

        from leanse.models.base import run_enhancement

        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None]  # [1, T]
        return run_enhancement(self.runner, x, **self.forward_kwargs)[0].float().cpu().numpy()  # [T]

    def cost(self, rtf: bool = True) -> dict[str, Any]:
        """Parameters, MACs/s (paper and exact conventions), bytes, RTF at 1 thread, latency.

        All figures come from :mod:`leanse.complexity`, except a peer's parameters and MACs: counted
        from its own model graphs where it ships them (DeepFilterNet3), else ``None`` (RNNoise's C
        library has no graph to count); a peer's RTF is timed by the same function on the same input.
        """
        from leanse import complexity

        out: dict[str, Any] = {"params": None, "effective_params": None, "macs_per_second_paper": None,
                               "macs_per_second_exact": None, "bytes": None, "rtf": None,
                               "latency_ms": None}
        if self.kind == "peer":
            out["latency_ms"] = self.model.peer.delay_ms
            counted = self.model.peer.counted_cost()  # from the peer's own graphs, where it ships them
            if counted is not None:
                out.update(counted, effective_params=counted["params"])
        elif self.kind == "onnx":
            out["bytes"] = self.model.path.stat().st_size
            stream = self.model.engine.sidecar.get("stream") or {}  # leanse export's timing of the model
            if stream.get("latency_samples") is not None and stream.get("hop") is not None:
                out["latency_ms"] = 1000.0 * (stream["latency_samples"] + stream["hop"]) / self.sample_rate
            else:
                out["latency_ms"] = latency_ms(self.model)
        else:
            for convention in complexity.CONVENTIONS:
                profile = complexity.profile_model(self.model, 1.0, convention=convention, rtf=False,
                                                   **self.forward_kwargs)
                out[f"macs_per_second_{convention}"] = float(profile["macs_per_second"])
            out.update(params=profile["params"], effective_params=profile["effective_params"],
                       bytes=profile["bytes"], latency_ms=latency_ms(self.model))
        if rtf:
            if self.kind == "peer":  # model loading is set-up, not processing (its delay is measured above)
                self.model.peer.prepare(REPEATS + 1)
            out["rtf"] = complexity.measure_rtf(self.model, COST_SECONDS, repeats=REPEATS, threads=1,
                                                **self.forward_kwargs)
        return out


class ResampledModel:
    """A model at one rate behind the model interface at another: ``[B, T]`` at ``sample_rate`` ->
    resample (soxr, linear phase) -> the model -> resample back, cut to ``T``."""

    num_sources = 1

    def __init__(self, model: Any, sample_rate: int) -> None:
        self.model = model
        self.sample_rate = int(sample_rate)

    @property
    def training(self) -> bool:
        return self.model.training

    def __call__(self, wav: "Any", **kwargs: Any) -> "Any":
        import numpy as np
        import torch

        from leanse.audio import resample

        rate = int(self.model.sample_rate)
        rows = []
        for x in wav.float().cpu().numpy():  # [T]
            inner = torch.from_numpy(resample(x, self.sample_rate, rate))[None]  # [1, T']
            y = self.model(inner, **kwargs)[0].float().cpu().numpy()
            y = resample(y, rate, self.sample_rate)[: len(x)]
            rows.append(np.pad(y, (0, len(x) - len(y))))
        return torch.from_numpy(np.stack(rows).astype(np.float32))  # [B, T]

    def parameters(self):
        return self.model.parameters()

    def eval(self) -> "ResampledModel":
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> "ResampledModel":
        self.model.train(mode)
        return self


def latency_ms(model: Any) -> float | None:
    """Algorithmic latency: for a streamable model ``latency_samples + hop`` (its output delay plus
    the hop it waits to fill; :mod:`leanse.models.streaming`), else one STFT window for an STFT
    model (``n_fft`` in its config), else ``None`` (unknown: shown as "-")."""
    try:
        reason = getattr(model, "not_streamable_reason", lambda: None)()
        samples = None if reason else int(model.latency_samples) + int(model.hop)
    except Exception:  # not streamable, or no timing declared: fall back to the window
        samples = None
    if samples is None:
        samples = (getattr(model, "config", None) or {}).get("n_fft")
    return None if samples is None else 1000.0 * float(samples) / int(model.sample_rate)


# --------------------------------------------------------------------------------------------
# The loader dispatch
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loader:
    """A file format ``compare`` / ``serve`` can run: ``matches(path)`` -> ``load(spec, path)``."""

    name: str
    matches: Callable[[Path], bool]
    load: Callable[[str, Path], System]


def _load_onnx(spec: str, path: Path) -> System:
    """An offline graph written by ``leanse export`` (issue 9), run by onnxruntime at 1 thread."""
    try:
        from leanse.export import OnnxOfflineModel
    except ImportError:
        raise ConfigError(f"{spec}: ONNX models are not supported by this leanse yet (issue 9); "
                          "compare the checkpoint it was exported from") from None
    return System(spec, path.name, OnnxRunner(OnnxOfflineModel(path, threads=1), path), "onnx",
                  notes=[f"{path.name}: an ONNX graph run by onnxruntime; bytes = the .onnx file's size, "
                         "no parameter or MAC count (profile the checkpoint it was exported from)"])


class OnnxRunner:
    """An onnxruntime engine behind the model interface evaluate and the RTF timer use."""

    num_sources = 1
    training = False

    def __init__(self, engine: Any, path: Path) -> None:
        self.engine = engine
        self.path = path
        self.sample_rate = int(engine.sample_rate)
        self.config = engine.sidecar.get("model", {}) if isinstance(engine.sidecar, dict) else {}

    def __call__(self, wav: "Any", **unused: Any) -> "Any":
        return self.engine(wav.float().cpu().numpy())

    def parameters(self):
        return iter(())

    def modules(self):
        return iter(())

    def eval(self) -> "OnnxRunner":
        return self

    def train(self, mode: bool = True) -> "OnnxRunner":
        return self


def _not_a_model_file(spec: str, path: Path) -> System:
    # Packed compressed models (``leanse compress``) are checkpoint folders and load as checkpoints.
    raise ConfigError(f"{spec}: not a model leanse can run; give a checkpoint folder (packed "
                      "compressed models included), a bundled name, a peer or an .onnx file")


#: Tried in order for a spec that is an existing *file* other than a checkpoint's own files.
LOADERS: list[Loader] = [
    Loader("onnx", lambda path: path.suffix.lower() == ".onnx", _load_onnx),
    Loader("other", lambda path: True, _not_a_model_file),  # the fallback for any other file
]


def load_system(spec: str, sample_rate: int = 16000) -> System:
    """The :class:`System` a MODEL spec names (see the module docstring); one-line errors."""
    from leanse.checkpoint import CONFIG, WEIGHTS, checkpoint_folder, load_checkpoint
    from leanse.peers import PEERS, PeerModel, get_peer

    spec = str(spec)
    if spec.lower() in PEERS:
        peer = get_peer(spec.lower())
        return System(spec, peer.name, PeerModel(peer, sample_rate), "peer",
                      notes=[f"{peer.name}: {peer.describe_delay()}"])
    base, blocks = spec, None
    match = EXIT_PATTERN.match(spec)
    if match:
        base, blocks = match["base"], int(match["blocks"])
    path = Path(base)
    if path.is_file() and path.name not in (WEIGHTS, CONFIG):
        if blocks is not None:
            raise ConfigError(f"{spec}: '@l=' exits apply to leanse checkpoints only")
        for loader in LOADERS:
            if loader.matches(path):
                return loader.load(spec, path)
    checkpoint_folder(base)  # a one-line CheckpointError for a missing or broken folder
    model = load_checkpoint(base)
    kwargs: dict[str, Any] = {}
    if blocks is not None:
        if not is_scalable(model):
            raise ConfigError(f"{spec}: this model ({model.config.get('name')}) has no exits; drop '@l={blocks}'")
        kwargs["blocks"] = model.check_blocks(blocks)
    label = _checkpoint_label(base) + (f"@l={blocks}" if blocks is not None else "")
    return System(spec, label, model, "leanse", kwargs)


def is_scalable(model: Any) -> bool:
    """Whether ``model`` runs at exits: its forward takes ``blocks`` (as ``enhance --blocks`` asks)."""
    import inspect

    forward = getattr(model, "forward", None)
    return forward is not None and "blocks" in inspect.signature(forward).parameters and hasattr(model, "check_blocks")


def _checkpoint_label(base: str) -> str:
    """``runs/x/best`` -> ``x``; ``runs/x`` -> ``x``; a bundled name stays itself."""
    path = Path(base)
    if not path.exists():
        return base
    path = path.resolve()
    if path.is_file():
        path = path.parent
    return path.parent.name if path.name in ("best", "last", "checkpoint") else path.name


def unique_labels(systems: list[System]) -> None:
    """Make labels unique in place (``x``, ``x-2``): they name files and table rows."""
    seen: dict[str, int] = {}
    for system in systems:
        count = seen.get(system.label, 0)
        seen[system.label] = count + 1
        if count:
            system.label = f"{system.label}-{count + 1}"

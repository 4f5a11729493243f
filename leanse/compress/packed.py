"""Packed checkpoints: a compressed model on disk at (close to) its compressed size.

A packed checkpoint is an ordinary leanse checkpoint folder (:mod:`leanse.checkpoint`) whose
``model.safetensors`` holds one ``uint8`` tensor ``__packed__``: for every quantized tensor its
float32 codebook, its bit-packed cluster indices and its position streams
(:mod:`leanse.compress.positions`), back to back (one blob rather than five safetensors entries
per tensor: the safetensors header costs ~70 bytes an entry, which is more than a small pruned
kernel). Every other tensor (biases, norms, buffers) is stored as is, under its own name.
``leanse.json`` carries, next to the usual model config, a ``packed`` section: per tensor its
shape, bits, nonzero count, layout, position mode and stream offsets, and the SHA-256 of the
weights file.
No pickle anywhere. :func:`leanse.checkpoint.load_checkpoint` loads it like any checkpoint
(``enhance`` / ``evaluate`` / ``profile``) and rebuilds weights bit-identical to the in-memory
compressed model; a truncated, tampered or foreign file is a one-line ``CheckpointError``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from leanse.compress.positions import MODES, PositionCode
from leanse.compress.quantization import PackedModel, QuantizedTensor, eq11_bytes
from leanse.errors import CheckpointError

__all__ = ["save_packed", "read_packed_state", "is_packed", "packed_summary", "packed_disk_sizes",
           "PACKING_VERSION"]

PACKING_VERSION = 1
BLOB = "__packed__"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def save_packed(model: torch.nn.Module, folder: str | os.PathLike, packed: PackedModel,
                meta: dict | None = None) -> Path:
    """Write ``model`` (already quantized by :func:`~leanse.compress.quantize_model`, which
    returned ``packed``) as a packed checkpoint folder."""
    from leanse.checkpoint import CONFIG, FORMAT, VERSION, WEIGHTS, _atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    header: dict[str, dict] = {}
    chunks: list[np.ndarray] = []
    offset = 0
    for name, q in packed.tensors.items():
        if name not in state:
            raise CheckpointError(f"packed tensor {name} is not in the model")
        if not torch.equal(q.unpack(), state[name].detach().cpu().float()):
            raise CheckpointError(f"{name}: the model's weights changed after quantization; "
                                  "quantize again before saving")
        streams = {"codebook": q.codebook.astype("<f4").view(np.uint8),
                   "indices": q.indices.astype(np.uint8)}
        streams.update({key: value.astype(np.uint8)
                        for key, value in q.positions.streams().items()})
        spans = {}
        for key, value in streams.items():
            spans[key] = [offset, int(value.size)]
            chunks.append(value.reshape(-1))
            offset += int(value.size)
        header[name] = {"shape": list(q.shape), "bits": q.bits, "count": q.count,
                        "layout": q.layout, "groups": list(q.positions.shape),
                        **q.positions.header(), "streams": spans}
    if chunks:
        tensors[BLOB] = torch.from_numpy(np.concatenate(chunks))
    seen: dict[int, str] = {}
    for name, value in state.items():
        if name in packed.tensors:
            continue
        value = value.detach().cpu().contiguous()
        pointer = value.untyped_storage().data_ptr()
        tensors[name] = value.clone() if pointer in seen else value  # shared storage: copy
        seen.setdefault(pointer, name)
    _atomic(folder / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    sizes = {"file_bytes": (folder / WEIGHTS).stat().st_size,
             "payload_bytes": int(sum(t.numel() * t.element_size() for t in tensors.values())),
             "eq11_bytes": eq11_bytes(model, packed.tensors),
             "dense_bytes": int(sum(t.numel() * t.element_size() for t in state.values()))}
    document = {"format": FORMAT, "version": VERSION, "model": model.config,
                "meta": meta or {},
                "packed": {"version": PACKING_VERSION, "sha256": digest, "sizes": sizes,
                           "tensors": header}}
    _atomic(folder / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(document, indent=2)))
    return folder


def is_packed(document: dict[str, Any]) -> bool:
    return isinstance(document, dict) and "packed" in document


def packed_summary(document: dict[str, Any]) -> dict[str, int]:
    """``{"file_bytes", "payload_bytes", "eq11_bytes", "dense_bytes"}`` of a packed checkpoint."""
    return dict(document["packed"]["sizes"])


def packed_disk_sizes(folder: str | os.PathLike) -> dict[str, int] | None:
    """What a packed checkpoint folder really takes on disk, or None for an unpacked checkpoint.

    ``packed_folder_bytes``: every file in the folder (weights + ``leanse.json``, whose header
    holds the per-tensor layout the weights need); ``packed_weights_bytes``: the weights file;
    ``dense_bytes``: the same weights as dense float32 (what a dequantized export must store).
    """
    from leanse.checkpoint import CONFIG, WEIGHTS

    folder = Path(folder)
    try:
        document = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not is_packed(document):
        return None
    return {"packed_folder_bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
            "packed_weights_bytes": (folder / WEIGHTS).stat().st_size,
            "dense_bytes": int(packed_summary(document)["dense_bytes"])}


def read_packed_state(folder: Path, document: dict[str, Any], map_location: str = "cpu"
                      ) -> dict[str, torch.Tensor]:
    """The dense ``state_dict`` of a packed checkpoint (checked against its digest)."""
    from leanse.checkpoint import WEIGHTS

    path = folder / WEIGHTS
    info = document["packed"]
    if not isinstance(info, dict) or info.get("version", 0) > PACKING_VERSION:
        raise CheckpointError(f"{folder}: packed by a newer leanse; upgrade leanse")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"{path}: does not match the digest in leanse.json (truncated, "
                              "tampered, or copied from another packed checkpoint); "
                              "re-run leanse compress")
    try:
        raw = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt packed weights ({err})") from None
    blob = _np(raw.pop(BLOB)) if BLOB in raw else np.zeros(0, np.uint8)
    state = dict(raw)
    for name, head in info.get("tensors", {}).items():
        try:
            state[name] = _unpack_one(head, blob).to(map_location)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: packed tensor {name} is inconsistent ({err}); "
                                  "re-run leanse compress") from None
    return state


def _unpack_one(head: dict, blob: np.ndarray) -> torch.Tensor:
    spans = head["streams"]

    def stream(key: str) -> np.ndarray | None:
        if key not in spans:
            return None
        start, length = (int(v) for v in spans[key])
        if start < 0 or length < 0 or start + length > blob.size:
            raise ValueError(f"stream {key} lies outside the packed data")
        return blob[start:start + length]

    mode = head["mode"]
    if mode not in MODES:
        raise ValueError(f"unknown position mode {mode!r}")
    shape = tuple(int(d) for d in head["shape"])
    groups = tuple(int(d) for d in head["groups"])
    if math.prod(groups) != math.prod(shape):
        raise ValueError("group shape does not cover the tensor")
    code = PositionCode(mode, groups, int(head["count"]), int(head["k"]), stream("groups"),
                        stream("unary"), stream("remainders"), bool(head.get("holes", False)))
    codebook = stream("codebook")
    indices = stream("indices")
    if codebook is None or indices is None:
        raise KeyError("codebook or indices missing")
    if codebook.size % 4:
        raise ValueError("codebook is not a float32 array")
    q = QuantizedTensor(shape, int(head["bits"]), codebook.copy().view("<f4").astype(np.float32), indices,
                        code, int(head["count"]), head["layout"])
    return q.unpack()

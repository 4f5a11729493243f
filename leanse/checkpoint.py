"""Checkpoints: safetensors weights plus a JSON config. Loading never unpickles anything.

A leanse checkpoint is a folder::

    model.safetensors   the weights (safetensors: a JSON header and raw tensors, no code)
    leanse.json         {"format": "leanse-checkpoint", "version": 1, "model": <model.config>,
                         "meta": {...}}   # meta: recipe, metrics, training step, ...

A checkpoint may also be given as the path of its ``model.safetensors`` or ``leanse.json`` file,
or as the name of a model bundled with leanse (``leanse-base``; ``leanse models`` lists them).
Training-state files (optimizer, step) for resuming are Lightning's own and live elsewhere in the
run folder; they are only ever loaded from runs the user made.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from leanse.errors import CheckpointError, ConfigError
from leanse.models import EnhancementModel, build_model

FORMAT = "leanse-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "leanse.json"


def save_checkpoint(model: EnhancementModel, folder: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` to ``folder`` (created); each file is written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(folder / WEIGHTS, lambda tmp: save_file(_unshare(state), tmp))
    document = {"format": FORMAT, "version": VERSION, "model": model.config, "meta": meta or {}}
    _atomic(folder / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(document, indent=2)))
    return folder


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a checkpoint, validated."""
    folder = checkpoint_folder(path)
    try:
        document = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{folder / CONFIG}: corrupt checkpoint config ({err})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{folder}: not a leanse checkpoint (no '{FORMAT}' marker in {CONFIG})")
    if document.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{folder}: written by a newer leanse (format version {document['version']}); upgrade leanse"
        )
    return document


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> EnhancementModel:
    """Rebuild the model from its config and load its weights (strictly: every key must match)."""
    folder = checkpoint_folder(path)
    document = read_checkpoint_config(folder)
    try:
        model = build_model(document["model"])
    except ConfigError as err:
        raise CheckpointError(f"{folder}: its model config does not build ({err})") from None
    if "packed" in document:  # a compressed model (leanse compress): codebooks + sparse codes
        from leanse.compress.packed import read_packed_state

        state = read_packed_state(folder, document, map_location)
    else:
        try:
            state = load_file(str(folder / WEIGHTS), device=map_location)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{folder / WEIGHTS}: corrupt or truncated weights ({err})") from None
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or wrong_shape:
        problems = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                    for label, keys in (("missing", missing), ("unexpected", unexpected),
                                        ("wrong shape", wrong_shape)) if keys]
        raise CheckpointError(
            f"{folder}: weights do not match the model config ({'; '.join(problems)}); "
            f"was {WEIGHTS} copied from another checkpoint?"
        )
    model.load_state_dict(state, strict=True)
    model.checkpoint_meta = document.get("meta", {})
    if "packed" in document:  # model_bytes / `leanse profile` report the packed file's size
        size = (folder / WEIGHTS).stat().st_size
        model.packed_bytes = lambda: size
    return model.eval()


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """Resolve a checkpoint folder from the folder or one of its files; check that it is whole."""
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS, CONFIG):
        path = path.parent
    if not path.exists():
        from leanse.pretrained import bundled_model, bundled_models

        bundled = bundled_model(str(path))
        if bundled is not None:
            return bundled
        names = ", ".join(bundled_models()) or "none"
        raise CheckpointError(f"{path}: no such checkpoint folder, and not a bundled model ({names})")
    if path.is_file():
        raise CheckpointError(
            f"{path}: not a leanse checkpoint; pass the folder that holds {WEIGHTS} and {CONFIG}"
        )
    missing = [name for name in (WEIGHTS, CONFIG) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path}: not a leanse checkpoint (missing {', '.join(missing)})")
    return path


def is_checkpoint(path: str | os.PathLike) -> bool:
    try:
        checkpoint_folder(path)
    except CheckpointError:
        return False
    return True


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied or shared weights): store copies.
    seen: dict[int, str] = {}
    out = {}
    for key, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, key)
    return out


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

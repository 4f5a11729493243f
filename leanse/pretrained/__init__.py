"""Pretrained models bundled inside the package.

Each bundled model is a checkpoint folder beside this file (``leanse-base/``, ``leanse-tiny/``):
``model.safetensors`` + ``leanse.json`` like any checkpoint, plus ``CARD.md``, its model card
(data and licences, training budget and machine, real-speech dev-set scores next to the peers',
parameters, MACs/s, RTF, latency). Every command that takes a checkpoint also takes a bundled
name; :func:`leanse.checkpoint.checkpoint_folder` resolves it. A bundled model is rebuilt by its
recipe in ``recipes/real/``, never edited by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent


def bundled_models() -> dict[str, Path]:
    """``{name: folder}`` of every bundled model, sorted by name."""
    return {
        folder.name: folder
        for folder in sorted(PRETRAINED_DIR.iterdir())
        if folder.is_dir() and (folder / "leanse.json").is_file() and (folder / "model.safetensors").is_file()
    }


def bundled_model(name: str) -> Path | None:
    """The folder of the bundled model ``name``, or ``None``."""
    return bundled_models().get(name)


def describe_bundled() -> list[dict]:
    """One row per bundled model: name, card summary line and what its card says it scores."""
    rows = []
    for name, folder in bundled_models().items():
        meta = json.loads((folder / "leanse.json").read_text()).get("meta", {})
        rows.append({"name": name, "folder": str(folder), "summary": meta.get("summary", ""),
                     "dev_set": meta.get("dev_set", {})})
    return rows

"""``leanse compress CHECKPOINT --pipeline c1|c2 --data RECIPE [-o OUT]`` (004's pipelines)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_compress_parser", "cmd_compress"]


def add_compress_parser(commands: Any) -> None:
    sub = commands.add_parser(
        "compress", help="004's C1 / C2 compression: prune, fine-tune, quantize, write a packed checkpoint")
    sub.add_argument("checkpoint", type=Path, help="the trained (uncompressed) checkpoint; only read")
    sub.add_argument("--pipeline", choices=["c1", "c2"], required=True,
                     help="c1: l1 + unstructured pruning; c2: sparse group lasso + structured pruning")
    sub.add_argument("--data", required=True, type=Path,
                     help="a recipe YAML: its data (validation / fine-tuning), train (loss, lr) and "
                          "compress sections")
    sub.add_argument("-o", "--out", type=Path, default=None,
                     help="output folder (default: runs/<checkpoint name>-<pipeline>); a killed run resumes")
    sub.add_argument("--alpha", type=float, nargs=2, metavar=("PRUNE", "QUANT"), default=None,
                     help="sensitivity tolerances alpha_1 (pruning) and alpha_2 (quantization)")
    sub.add_argument("--max-iterations", type=int, default=None, help="pruning iterations at most")
    sub.add_argument("--common-ratio", type=float, default=None,
                     help="prune every tensor by this ratio (004 Fig. 7's P2) instead of per-tensor sensitivity")
    sub.add_argument("--no-regularizer", action="store_true",
                     help="fine-tune without the sparse penalty (004 Fig. 4 (a))")
    sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="a recipe override, e.g. --set compress.fine_tune_epochs=1 (repeatable)")
    sub.set_defaults(handler=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from leanse.compress.pipeline import CompressConfig, compress_checkpoint
    from leanse.config import from_dict
    from leanse.errors import ConfigError
    from leanse.train.recipe import load_recipe

    if not args.data.is_file():
        raise ConfigError(f"--data {args.data}: no such recipe file")
    recipe = load_recipe(args.data, args.overrides)
    options = dict(recipe.compress)
    options["pipeline"] = args.pipeline
    if args.alpha is not None:
        options["alpha_prune"], options["alpha_quant"] = args.alpha
    if args.max_iterations is not None:
        options["max_iterations"] = args.max_iterations
    if args.common_ratio is not None:
        options["common_ratio"] = args.common_ratio
    if args.no_regularizer:
        options["regularize"] = False
    config = from_dict(CompressConfig, options, "compress")
    out = args.out or Path("runs") / f"{Path(args.checkpoint).name}-{args.pipeline}"
    state = compress_checkpoint(args.checkpoint, recipe, out, config)
    sizes = state["sizes"]
    print(json.dumps({
        "packed": state["packed"], "stopped": state["stopped"],
        "iterations": len(state["history"]),
        "validation_before": state["base"], "validation_after": state["final_scores"],
        "input_bytes": sizes["input_bytes"], "file_bytes": sizes["file_bytes"],
        "eq11_bytes": sizes["eq11_bytes"],
        "rate_by_file": round(sizes["rate_by_file"], 2),
        "rate_by_eq11": round(sizes["rate_by_eq11"], 2),
    }, indent=2))
    return 0

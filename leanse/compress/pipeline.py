"""004's compression pipelines C1 and C2 (Fig. 3), end to end, resumable.

C1: l1 regularisation (Eq. (7)) + unstructured pruning (Algorithm 1) + k-means quantization
(Algorithm 3). C2: sparse group lasso (Eq. (9)) + structured pruning of 004's groups
(Algorithm 2) + the same quantization; C2's model is then physically shrunk where the
architecture allows (:mod:`leanse.compress.shrink`).

Each pruning iteration (Sec. II-B): per-tensor sensitivity analysis on a fixed validation batch
(the increase of the recipe's loss plays 004's ``I_U``; tolerance ``alpha_prune``), prune, fine-tune
with the regulariser (its lambdas decay by ``decay`` = 0.9 every iteration, Sec. III-C) and the
masks held, then score STOI and PESQ on the validation list. Models with several outputs that must
all survive are scored on each: a BLOOM-Net's every exit (and fine-tuned on their summed loss,
BLOOM-FT), a sparse ensemble's gated output and each specialist on its own (:func:`_outputs`; it is fine-tuned
with 000's soft gating, :func:`_task_class`). Iterations stop when one prunes a
trivial share of the remaining weights (``min_removed``) or when STOI or PESQ falls more than
``stoi_drop`` / ``pesq_drop`` below the uncompressed model (that iteration is undone). Then
Algorithm 3 picks each tensor's bit-width (tolerance ``alpha_quant``) and the model is written as a
packed checkpoint (:mod:`leanse.compress.packed`).

The output folder::

    compress.json          options, every iteration's record, sizes, scores (the report's source)
    work/iter_K/           fine-tuning run of iteration K (Lightning state: a killed run resumes)
    work/iter_K.model/     the accepted model after iteration K (leanse checkpoint)
    pruned/                the pruned float model (leanse checkpoint)
    shrunk/                C2: the physically shrunk float model (leanse checkpoint)
    packed/                the compressed model (packed checkpoint): load it like any checkpoint

The input checkpoint is only read.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from leanse.checkpoint import checkpoint_folder, load_checkpoint, read_checkpoint_config, save_checkpoint
from leanse.compress.pruning import Pruner
from leanse.compress.quantization import MAX_BITS, quantize_model
from leanse.compress.regularizers import (
    DEFAULT_GROUPING,
    RegularizerConfig,
    check_grouping,
    prunable_tensors,
)
from leanse.compress.sensitivity import (
    PAPER_RATIOS,
    chosen_ratios,
    pruning_sensitivity,
    quantization_sensitivity,
)
from leanse.errors import CheckpointError, ConfigError

__all__ = ["CompressConfig", "compress_checkpoint", "PIPELINES"]

#: pipeline -> (regulariser kind, structured pruning)
PIPELINES = {"c1": ("l1", False), "c2": ("sgl", True)}


@dataclass
class CompressConfig:
    """The ``compress`` section of a recipe (004 Sec. III-C gives the paper's values per model).

    ``alpha_prune`` / ``alpha_quant``: tolerances of Algorithms 1-2 / 3 (004's alpha_1 /
    alpha_2) on the increase of the recipe's validation loss. ``common_ratio``: prune every
    tensor by this ratio instead of the sensitivity analysis (004 Fig. 7's P2 baseline).
    ``regularize: false``: fine-tune without the penalty (004 Fig. 4 (a)). ``gate_tolerance``:
    a sparse ensemble's gate tensors are analysed on the gate's decisions instead of the loss
    (:func:`_sensitivity`): the share of validation utterances they may route differently.
    """

    pipeline: str = "c1"
    weight: float = 0.1  # lambda_1, Eq. (7)
    group_weight: float = 0.005  # lambda_2, Eq. (8) (C2)
    decay: float = 0.9  # both lambdas x0.9 every pruning iteration
    regularize: bool = True
    grouping: str = DEFAULT_GROUPING
    alpha_prune: float = 0.3
    alpha_quant: float = 0.1
    ratios: list[float] = field(default_factory=lambda: list(PAPER_RATIOS))
    common_ratio: float | None = None
    max_iterations: int = 5
    min_removed: float = 0.01  # an iteration removing less than this share of the rest is trivial
    stoi_drop: float = 0.02  # stop when validation STOI falls more than this ...
    pesq_drop: float = 0.1  # ... or PESQ more than this below the uncompressed model
    fine_tune_epochs: int = 2
    fine_tune_minutes: float | None = None
    regularized_epochs: int = 0  # training with the penalty before the first pruning (Fig. 3)
    max_bits: int = MAX_BITS
    sensitivity_size: int = 16  # validation mixtures in the sensitivity batch
    score_size: int = 20  # validation mixtures scored by STOI / PESQ after each iteration
    shrink: bool = True  # C2: remove dead units physically
    gate_tolerance: float = 0.05  # a sparse ensemble's gate: share of its decisions that may change


    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"compress.pipeline: expected c1 or c2, got {self.pipeline!r}")
        if not (isinstance(self.gate_tolerance, (int, float)) and 0 <= self.gate_tolerance <= 1):
            raise ConfigError(f"compress.gate_tolerance: a share of decisions in [0, 1], not {self.gate_tolerance!r}")
        for name in ("alpha_prune", "alpha_quant", "stoi_drop", "pesq_drop"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"compress.{name}: a tolerance is a finite number >= 0, not {value!r}")
        if not 1 <= int(self.max_bits) <= MAX_BITS:
            raise ConfigError(f"compress.max_bits: in 1..{MAX_BITS}, not {self.max_bits!r}")
        if self.common_ratio is not None and not 0 < self.common_ratio < 1:
            raise ConfigError(f"compress.common_ratio: in (0, 1), not {self.common_ratio!r}")
        if not self.ratios or any(not 0 <= r <= 1 for r in self.ratios):
            raise ConfigError("compress.ratios: pruning ratios in [0, 1]")
        if self.max_iterations < 1:
            raise ConfigError("compress.max_iterations: at least 1")
        check_grouping(self.grouping)

    @property
    def structured(self) -> bool:
        return PIPELINES[self.pipeline][1]

    def regularizer(self) -> RegularizerConfig | None:
        if not self.regularize:
            return None
        kind = PIPELINES[self.pipeline][0]
        return RegularizerConfig(kind, self.weight, self.group_weight if kind == "sgl" else 0.0,
                                 self.grouping, self.decay)


def _multi_exit(model: torch.nn.Module) -> bool:
    """A model with several exits (BLOOM-Net): every exit is scored and fine-tuned."""
    return callable(getattr(model, "forward_all_exits", None))


def _ensemble(model: torch.nn.Module) -> bool:
    """A sparse ensemble (000/001): a gate and specialists."""
    return isinstance(getattr(model, "specialists", None), torch.nn.ModuleList) and \
        isinstance(getattr(model, "gate", None), torch.nn.Module)


def _outputs(model: torch.nn.Module, noisy: torch.Tensor) -> list[torch.Tensor]:
    """What the sensitivity analysis scores (``[B, T]`` each): every exit of a BLOOM-Net; a
    sparse ensemble's gated output *and* each specialist's own output. With hard gating a
    specialist only runs on what the gate sends it, so on a small validation batch a specialist
    nobody was routed to would look free to prune entirely; scoring each specialist on the whole
    batch keeps its tensors' cost visible, and the gated output keeps the gate's (its routing)."""
    if _multi_exit(model):
        return list(model.forward_all_exits(noisy).unbind(1))
    if _ensemble(model):
        return [model(noisy), *(specialist(noisy) for specialist in model.specialists)]
    return [model(noisy)]


# --------------------------------------------------------------------------------------------
# Scores on the validation set
# --------------------------------------------------------------------------------------------


class _Validation:
    """Fixed validation mixtures: a loss batch for the sensitivity analyses, STOI / PESQ."""

    def __init__(self, mixers: Any, loss: str, sensitivity_size: int, score_size: int) -> None:
        from leanse.data.datamodule import fixed_mixtures
        from leanse.losses import get_loss

        specs = mixers.valid_specs
        self.loss_fn = get_loss(loss)
        self.batch = fixed_mixtures(mixers.valid, specs[:sensitivity_size])
        self.scored = fixed_mixtures(mixers.valid, specs[:score_size])
        self.routed = fixed_mixtures(mixers.valid, specs)  # a gate is cheap: the whole list

    def routes(self, model: torch.nn.Module) -> list[int]:
        """The specialist a sparse ensemble's gate picks for each validation mixture (000 eq. 3)."""
        from leanse.train.classify import predict_classes

        return predict_classes(model.gate, self.routed)

    def agreement(self, reference: torch.nn.Module) -> Callable[[torch.nn.Module], float]:
        """Higher is better: the share of validation mixtures a gate routes as ``reference``'s
        gate does now (1.0 for ``reference`` itself)."""
        expected = self.routes(reference)
        return lambda model: sum(a == b for a, b in zip(self.routes(model), expected)) / max(len(expected), 1)

    @torch.no_grad()
    def exit_losses(self, model: torch.nn.Module) -> list[float]:
        """The mean loss over the sensitivity batch of each output :func:`_outputs` scores (one
        for a single-exit model)."""
        model.eval()
        totals: list[float] = []
        for mixture in self.batch:
            noisy = torch.from_numpy(mixture.noisy)[None]
            clean = torch.from_numpy(mixture.clean)[None]
            args = (noisy,) if getattr(self.loss_fn, "needs_noisy", False) else ()
            losses = [float(self.loss_fn(out, clean, *args)) for out in _outputs(model, noisy)]
            totals = [a + b for a, b in zip(totals, losses)] if totals else losses
        return [total / max(len(self.batch), 1) for total in totals]

    def negative_loss(self, model: torch.nn.Module) -> float:
        """Higher is better: minus the mean loss over the sensitivity batch, *summed* over the
        outputs of :func:`_outputs` (BLOOM-FT's objective, 003 Sec. 2.3): a tensor that only one
        exit or one specialist uses is charged its full cost there against the tolerance (a mean
        would dilute it by the number of outputs), one that feeds them all the sum of its costs."""
        return -sum(self.exit_losses(model))

    def scores(self, model: torch.nn.Module) -> dict[str, float]:
        from leanse.evaluate import evaluate_model

        means = evaluate_model(model.eval(), self.scored, workers=1).means
        return {key: float(means[key]) for key in ("stoi", "pesq", "si_sdri")
                if means.get(key) is not None}


def _sensitivity(model: torch.nn.Module, validation: _Validation, config: CompressConfig,
                 tensors: list, quantization: bool = False) -> dict:
    """Algorithm 1 / 2 (or 3 with ``quantization``) on every tensor; a sparse ensemble's gate
    tensors on the gate's decisions.

    A gate is a classifier (000 Sec. 2.2): its job is to pick the specialist, and a wrong pick
    costs the ensemble's loss little when the specialists are alike, so on the loss alone each gate
    tensor looks nearly free and, pruned together, they leave a constant gate: one specialist for
    every input (measured: a trained tiny gate went 17,536 -> 3 weights). Its tensors are charged
    instead for the share of validation utterances routed differently from the gate being pruned
    (tolerance ``gate_tolerance``)."""
    in_gate = [_ensemble(model) and t.name.startswith("gate.") for t in tensors]
    gate = [t for t, flag in zip(tensors, in_gate) if flag]
    rest = [t for t, flag in zip(tensors, in_gate) if not flag]
    table: dict = {}
    for part, evaluate, tolerance in (
            (rest, validation.negative_loss, config.alpha_quant if quantization else config.alpha_prune),
            (gate, validation.agreement(model) if gate else None, config.gate_tolerance)):
        if not part:
            continue
        if quantization:
            table.update(quantization_sensitivity(model, evaluate, tolerance, config.max_bits, tensors=part))
        else:
            table.update(pruning_sensitivity(model, evaluate, tolerance, config.ratios, config.structured,
                                             config.grouping, tensors=part))
    return table


# --------------------------------------------------------------------------------------------
# Fine-tuning with masks and the regulariser
# --------------------------------------------------------------------------------------------


def _task_class(model: torch.nn.Module) -> type:
    """The training task a model is fine-tuned with: the objective it was trained on.

    A BLOOM-Net: BLOOM-FT's summed loss of all exits (003 Sec. 2.3). A sparse ensemble: 000's
    fine-tuning (Sec. 2.3, eq. 4-5), soft gating in training and hard gating in validation. Hard
    gating (eq. 3) is an arg-max, so trained that way the gate would get no gradient from the
    enhancement loss and the sparse penalty alone would shrink it towards zero. Anything else:
    the plain enhancement loss."""
    if _multi_exit(model):
        from leanse.train.bloom import AllExitsTask

        return AllExitsTask
    if _ensemble(model):
        from leanse.train.ensembles.steps import FineTuneTask

        return FineTuneTask
    from leanse.train.engine import EnhancementTask

    return EnhancementTask


def _fine_tune(model: torch.nn.Module, pruner: Pruner | None, recipe: Any, mixers: Any,
               run_dir: Path, epochs: int, minutes: float | None,
               regularizer: RegularizerConfig | None) -> torch.nn.Module:
    """Train ``model`` for ``epochs`` with the masks re-applied after every step; returns the
    best model by validation loss (a new module)."""
    from leanse.train.runner import fit_mixtures

    class MaskedTask(_task_class(model)):  # type: ignore[misc, valid-type]
        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            super().optimizer_step(*args, **kwargs)
            if pruner is not None:
                pruner.apply()

    model.train()  # checkpoints load in eval mode
    config = dataclasses.replace(recipe.train, max_epochs=epochs, max_minutes=minutes,
                                 regularizer=regularizer, early_stop_patience=None,
                                 progress_bar=False)
    mode = getattr(model, "mode", None)  # an ensemble trains soft; it is scored as it came in
    best = fit_mixtures(recipe, model, mixers, config, run_dir, task=MaskedTask(model, config),
                        meta={"stage": run_dir.name})
    tuned = load_checkpoint(best)
    if mode is not None:
        tuned.mode = mode
    return tuned


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


def _load_input(path: str | os.PathLike) -> tuple[Path, torch.nn.Module]:
    folder = checkpoint_folder(path)
    document = read_checkpoint_config(folder)
    if "packed" in document:
        raise CheckpointError(f"{folder}: already a compressed (packed) checkpoint; compress the "
                              "uncompressed model it came from")
    model = load_checkpoint(folder)
    if not prunable_tensors(model):
        raise ConfigError(f"{folder}: this model has no prunable weight tensors (Linear, Conv, "
                          "RNN); nothing to compress")
    return folder, model


def _state(out: Path) -> dict:
    path = out / "compress.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(out: Path, state: dict) -> None:
    tmp = out / "compress.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=float))
    os.replace(tmp, out / "compress.json")


def compress_checkpoint(checkpoint: str | os.PathLike, recipe: Any, out: str | os.PathLike,
                        config: CompressConfig, log: Callable[[str], None] = print) -> dict:
    """Run C1 or C2 on ``checkpoint`` with the recipe's data and training settings; returns the
    summary written to ``out/compress.json``. A run killed half-way resumes where it stopped."""
    from leanse.data.datamodule import build_mixers

    source, model = _load_input(checkpoint)
    out = Path(out)
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise ConfigError(f"-o {out}: must not be the input checkpoint or inside it")
    out.mkdir(parents=True, exist_ok=True)
    state = _state(out)
    options = dataclasses.asdict(config)
    if state and state.get("options") != options:
        raise ConfigError(f"{out}: holds a compression run with other options; pass another -o "
                          "or delete that folder")
    if model.sample_rate != recipe.data.sample_rate:
        raise ConfigError(f"the model runs at {model.sample_rate} Hz, data.sample_rate is "
                          f"{recipe.data.sample_rate}")
    mixers = build_mixers(recipe.data)
    validation = _Validation(mixers, recipe.train.loss, config.sensitivity_size, config.score_size)
    started = time.time()
    # a sparse ensemble: how many of the input gate's decisions each iteration keeps (the record)
    input_gate = validation.agreement(model) if _ensemble(model) else None
    if not state:
        state = {"options": options, "input": str(source), "history": [],
                 "base": validation.scores(model), "base_loss": validation.negative_loss(model),
                 "params": sum(s.weight.numel() for s in prunable_tensors(model)),
                 "input_bytes": int(sum(t.numel() * t.element_size()
                                        for t in model.state_dict().values()))}
        if _multi_exit(model) or _ensemble(model):
            state["base_exit_losses"] = validation.exit_losses(model)
        _write_state(out, state)
    regularizer = config.regularizer()
    work = out / "work"

    # Training with the penalty before the first pruning (004 Fig. 3), if asked for.
    if config.regularized_epochs and regularizer is not None:
        done = work / "iter_0.model"
        if done.is_dir():
            model = load_checkpoint(done)
        else:
            log(f"regularised training ({regularizer.kind}) for {config.regularized_epochs} epochs")
            model = _fine_tune(model, None, recipe, mixers, work / "iter_0",
                               config.regularized_epochs, config.fine_tune_minutes, regularizer)
            save_checkpoint(model, done, {"stage": "regularised"})

    # Iterative pruning (004 Sec. II-B).
    history: list[dict] = state["history"]
    for record in history:
        if record["accepted"]:
            model = load_checkpoint(work / f"iter_{record['iteration']}.model")
    stopped = state.get("stopped")
    iteration = len(history)
    while stopped is None and iteration < config.max_iterations:
        iteration += 1
        pruner = Pruner.from_zeros(model)
        remaining = pruner.nonzeros()
        saved = copy.deepcopy(model)
        if config.common_ratio is not None:
            ratios: dict[str, float] | float = config.common_ratio
        else:
            table = _sensitivity(model, validation, config, pruner.tensors)
            ratios = chosen_ratios(table)
        removed = (pruner.prune_groups(ratios, config.grouping) if config.structured
                   else pruner.prune(ratios))
        log(f"iteration {iteration}: pruned {removed:,} of {remaining:,} remaining weights")
        if removed > 0:
            model = _fine_tune(model, pruner, recipe, mixers, work / f"iter_{iteration}",
                               config.fine_tune_epochs, config.fine_tune_minutes,
                               regularizer.scaled(iteration) if regularizer else None)
        scores = validation.scores(model)
        base = state["base"]
        drops = {key: base[key] - scores[key] for key in ("stoi", "pesq") if key in scores and key in base}
        accepted = (drops.get("stoi", 0.0) <= config.stoi_drop
                    and drops.get("pesq", 0.0) <= config.pesq_drop)
        nonzeros = Pruner.from_zeros(model).nonzeros()
        record = {"iteration": iteration, "removed": removed, "remaining_before": remaining,
                  "nonzeros": nonzeros, "fraction_left": nonzeros / state["params"],
                  "ratios": ratios, "scores": scores, "drops": drops, "accepted": accepted,
                  "lambda_scale": config.decay ** iteration if regularizer else 0.0}
        if input_gate is not None:
            record["gate_agreement"] = input_gate(model)
        history.append(record)
        if accepted:
            save_checkpoint(model, work / f"iter_{iteration}.model", {"stage": f"iteration {iteration}"})
        else:
            model = saved
            stopped = f"iteration {iteration} lost STOI {drops.get('stoi', 0):.3f} / PESQ {drops.get('pesq', 0):.3f}"
        if accepted and removed < config.min_removed * max(remaining, 1):
            stopped = f"iteration {iteration} pruned a trivial share ({removed} weights)"
        state["stopped"] = stopped
        _write_state(out, state)
        log(f"iteration {iteration}: {100 * record['fraction_left']:.1f} % of the weights left, "
            f"scores {scores}, {'accepted' if accepted else 'undone'}")
    state["stopped"] = stopped or f"{config.max_iterations} iterations"
    save_checkpoint(model, out / "pruned", {"stage": "pruned", "pipeline": config.pipeline})

    # C2: physical shrinking of dead units.
    final = model
    if config.structured and config.shrink:
        from leanse.compress.shrink import shrink_model

        shrunk = copy.deepcopy(model)
        info = shrink_model(shrunk)
        state["shrink"] = info
        if info["units_removed"] and info["reloadable"]:
            save_checkpoint(shrunk, out / "shrunk", {"stage": "shrunk"})
            final = shrunk

    # Quantization (Algorithm 3) and the packed file.
    from leanse.compress.packed import save_packed

    final = copy.deepcopy(final)
    table = _sensitivity(final, validation, config, prunable_tensors(final), quantization=True)
    bits = {name: int(row["chosen"]) for name, row in table.items()}
    packed = quantize_model(final, bits)
    save_packed(final, out / "packed", packed,
                meta={"pipeline": config.pipeline, "source": str(source), "bits": bits})
    sizes = json.loads((out / "packed" / "leanse.json").read_text())["packed"]["sizes"]
    sizes["input_bytes"] = state["input_bytes"]  # the uncompressed model (C2: before shrinking)
    sizes["rate_by_file"] = state["input_bytes"] / sizes["file_bytes"]
    sizes["rate_by_eq11"] = state["input_bytes"] / sizes["eq11_bytes"]
    if _multi_exit(final) or _ensemble(final):  # every exit / specialist still runs; its cost
        state["final_exit_losses"] = validation.exit_losses(load_checkpoint(out / "packed"))
    state.update({"bits": bits, "sizes": sizes, "final_scores": validation.scores(final),
                  "seconds": state.get("seconds", 0.0) + time.time() - started,
                  "packed": str(out / "packed")})
    _write_state(out, state)
    return state

"""GroupComm (paper 002): Table 2 rows trained and scored on noisy reverberant two-talker mixtures.

The ``groupcomm`` recipe, top to bottom (:func:`run_groupcomm`):

1. data: 002 Sec. 3.1 mixtures (:mod:`leanse.data.two_talker`; options in ``stages.mixing``),
   fixed seeded validation and test lists;
2. for the baseline (``model``, DPRNN-TasNet) and every ``stages.rows`` entry (GroupComm-DPRNN
   configurations): train with utterance-level permutation-invariant training (PIT, Kolbaek et al.
   2017) on SNR (002 Sec. 3.3: "Signal-to-noise ratio (SNR) is used as the training objective";
   ``train.loss: si_sdr`` trains on SI-SDR instead), Adam 1e-3, LR x0.98 every two epochs,
   gradient-norm clip 5, early stop after 10 epochs -- all settings of the one engine;
3. score each model on the test list with the best permutation per mixture
   (:func:`score_separation`): SI-SDR (002 Sec. 3.4) and SI-SDRi against the mixture;
4. count parameters and MACs (thop convention, 4-s inputs, 002 Sec. 3.4 / Table 2) and the
   ratios to the baseline, "2.6M (1.0x)" style;
5. separate one test mixture with the best GroupComm row; write ``report.md`` (Table 2).

A2T (auxiliary autoencoding training, 002 Sec. 3.3) is not implemented: 002 calls it a robustness
aid; every model here is trained the same way without it, so the comparison stays like for like.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from leanse.audio import save_audio
from leanse.checkpoint import load_checkpoint
from leanse.complexity import count_macs, count_parameters
from leanse.data.two_talker import (
    SeparationMixture,
    TwoTalkerDataset,
    TwoTalkerMixers,
    build_two_talker_mixers,
    fixed_two_talker_mixtures,
    mixture_seconds,
    write_two_talker_specs,
)
from leanse.errors import ConfigError
from leanse.losses import PIT_LOSSES
from leanse.metrics import SI_SDR_CONVENTION
from leanse.metrics import si_sdr as np_si_sdr
from leanse.models import EnhancementModel, build_model
from leanse.report import markdown_table, report_head, text_table
from leanse.train.engine import BEST, EnhancementTask, TrainConfig, fit, torch_threads
from leanse.train.recipe import Recipe, save_recipe
from leanse.train.runner import epochs_trained, run_stage
from leanse.train.single import RunResult
from leanse.train.stages import GroupCommStages, recipe_stages

# ================================================================================================
# Permutation-invariant training and scoring
# ================================================================================================


class SeparationTask(EnhancementTask):
    """The engine's task for ``[B, T] -> [B, S, T]`` models: PIT on ``batch["sources"]``."""

    def __init__(self, model: EnhancementModel, config: TrainConfig) -> None:
        super().__init__(model, config)
        if config.loss not in PIT_LOSSES:
            raise ConfigError(f"train.loss: separation trains on {' or '.join(PIT_LOSSES)}, not {config.loss!r}")
        self.pit_loss = PIT_LOSSES[config.loss]

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        estimates = self.model(batch["noisy"])  # [B, S, T]
        return self.pit_loss(estimates, batch["sources"])

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)


def score_separation(estimates: np.ndarray, references: np.ndarray, mixture: np.ndarray) -> dict[str, Any]:
    """SI-SDR of ``[S, T]`` estimates against ``[S, T]`` references under the best permutation.

    Returns the mean over sources of SI-SDR and SI-SDRi (against ``mixture`` ``[T]``), each
    source's SI-SDR and the permutation (``perm[j]``: the estimate matched with reference ``j``).
    """
    estimates, references = np.asarray(estimates, np.float64), np.asarray(references, np.float64)
    if estimates.shape != references.shape or estimates.ndim != 2:
        raise ValueError(f"expected [S, T] estimates and references, got {estimates.shape} and {references.shape}")
    pairs = np.asarray(np_si_sdr(*np.broadcast_arrays(estimates[:, None, :], references[None, :, :])))  # [S_est, S_ref]
    sources = range(len(references))
    perm = max(itertools.permutations(sources), key=lambda p: sum(pairs[p[j], j] for j in sources))
    matched = np.array([pairs[perm[j], j] for j in sources])
    unprocessed = np.asarray(np_si_sdr(np.broadcast_to(np.asarray(mixture, np.float64), references.shape), references))
    row: dict[str, Any] = {
        "si_sdr": float(matched.mean()),
        "si_sdri": float((matched - unprocessed).mean()),
        "si_sdr_noisy": float(unprocessed.mean()),
        "permutation": " ".join(map(str, perm)),
    }
    row.update({f"si_sdr_{j}": float(matched[j]) for j in sources})
    return row


@dataclass
class SeparationResult:
    rows: list[dict[str, Any]]

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def means(self) -> dict[str, float]:
        return {key: float(np.mean([row[key] for row in self.rows])) for key in ("si_sdr", "si_sdri", "si_sdr_noisy")}

    def by_overlap(self, edges: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> list[dict[str, Any]]:
        """Mean SI-SDRi per overlap-ratio bin (how hard overlap makes it)."""
        out = []
        for low, high in zip(edges[:-1], edges[1:]):
            rows = [r for r in self.rows if low <= r["overlap"] < high or (high == edges[-1] and r["overlap"] == high)]
            if rows:
                out.append({"overlap": f"{low:.0%}-{high:.0%}", "n": len(rows),
                            "SI-SDRi": float(np.mean([r["si_sdri"] for r in rows]))})
        return out


def separate(model: torch.nn.Module, noisy: np.ndarray) -> np.ndarray:
    """``[T]`` -> ``[S, T]`` with a separation model (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None])  # [1, S, T]
    finally:
        model.train(was_training)
    return out[0].numpy()


def evaluate_separation(model: torch.nn.Module, mixtures: Iterable[SeparationMixture],
                        out_dir: Path | None = None) -> SeparationResult:
    """Separate every mixture and score it with the best permutation (per-file rows)."""
    rows = []
    for mixture in mixtures:
        if mixture.sample_rate != model.sample_rate:
            raise ConfigError(f"mixture {mixture.id} is at {mixture.sample_rate} Hz, the model at {model.sample_rate} Hz")
        estimates = separate(model, mixture.noisy)
        scalars = {k: v for k, v in mixture.meta.items() if isinstance(v, (int, float, str))}
        rows.append({"id": mixture.id, **scalars, **score_separation(estimates, mixture.sources, mixture.noisy)})
    result = SeparationResult(rows)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = list(rows[0]) if rows else ["id"]
        lines = [",".join(columns)] + [",".join(_csv_cell(row.get(c)) for c in columns) for row in rows]
        (out_dir / "per_file.csv").write_text("\n".join(lines) + "\n")
        summary = {"n_files": result.count, "convention": SI_SDR_CONVENTION + "; best permutation per file",
                   "overall": result.means, "by_overlap": result.by_overlap()}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f'"{text}"' if "," in text else text


# ================================================================================================
# The recipe, top to bottom
# ================================================================================================


@dataclass
class Row:
    label: str
    config: dict[str, Any]
    folder: Path


def train_groupcomm(recipe: Recipe) -> tuple[GroupCommStages, TwoTalkerMixers, list[Row]]:
    """Train the baseline and every GroupComm row (finished rows are not trained again)."""
    stages = recipe_stages(recipe)
    run_dir = recipe.run_dir
    save_recipe(recipe, run_dir / "recipe.yaml")
    rows = plan_rows(recipe, stages)
    mixers = build_two_talker_mixers(recipe.data, stages.mixing)
    write_two_talker_specs(run_dir / "valid_list.csv", mixers.valid_specs)
    write_two_talker_specs(run_dir / "test_list.csv", mixers.test_specs)
    with torch_threads(stages.threads):
        for row in rows:
            train_separator(recipe, stages, mixers, row)
    return stages, mixers, rows


def run_groupcomm(recipe: Recipe) -> RunResult:
    """Train, score, count and report: 002 Table 2 for the recipe's rows."""
    stages = recipe_stages(recipe)
    with torch_threads(stages.threads):
        return _run_groupcomm(recipe)


def _run_groupcomm(recipe: Recipe) -> RunResult:
    started = time.time()
    stages, mixers, rows = train_groupcomm(recipe)
    test_set = fixed_two_talker_mixtures(mixers.test, mixers.test_specs)

    table = []
    results = {}
    for row in rows:
        model = load_checkpoint(row.folder / BEST)
        results[row.label] = evaluate_separation(model, test_set, recipe.run_dir / "evaluation" / row.folder.name)
        table.append({**architecture(model), "model": row.label, "epochs": epochs_trained(row.folder),
                      "SI-SDR": results[row.label].means["si_sdr"],
                      "SI-SDRi": results[row.label].means["si_sdri"], "params": count_parameters(model),
                      "MACs": float(count_macs(model, stages.profile_seconds, "paper"))})
    baseline = table[0]
    for entry in table:  # 002 Table 2: "663.0K (3.9x)": how many times smaller than the baseline
        entry["size ratio"] = f"{baseline['params'] / entry['params']:.1f}x"
        entry["MACs ratio"] = f"{baseline['MACs'] / entry['MACs']:.1f}x"

    # One test mixture separated by the best GroupComm row (by SI-SDRi), in reference order.
    best = max(table[1:] or table, key=lambda e: e["SI-SDRi"])
    enhanced = write_example(load_checkpoint(next(r for r in rows if r.label == best["model"]).folder / BEST),
                             test_set[0], recipe.run_dir / "examples")
    report = write_groupcomm_report(recipe, stages, table, results, len(test_set), time.time() - started)
    return RunResult(recipe.run_dir, report, enhanced, text_table(table, TABLE2_COLUMNS), table)


def plan_rows(recipe: Recipe, stages: GroupCommStages) -> list[Row]:
    """The baseline (``model``) then ``stages.rows``; each must be a 2-source model at the data rate."""
    if recipe.train.loss not in PIT_LOSSES:
        raise ConfigError(f"train.loss: separation trains on {' or '.join(PIT_LOSSES)}, not {recipe.train.loss!r}")
    configs = [recipe.model, *stages.rows]
    rows = []
    for config in configs:
        config = dict(config)
        label = str(config.pop("label", "") or _label(config))
        model = build_model(config)  # unknown presets / options fail here, before any training
        if model.num_sources != 2:
            raise ConfigError(f"{label}: 002 separates two talkers; set num_sources: 2 (it has {model.num_sources})")
        if model.sample_rate != recipe.data.sample_rate:
            raise ConfigError(f"{label} runs at {model.sample_rate} Hz but data.sample_rate is {recipe.data.sample_rate}")
        rows.append(Row(label, config, recipe.run_dir / _slug(label)))
    if len({r.folder for r in rows}) != len(rows):
        raise ConfigError(f"the recipe lists the same model twice: {[r.label for r in rows]}")
    return rows


def train_separator(recipe: Recipe, stages: GroupCommStages, mixers: TwoTalkerMixers, row: Row) -> Path:
    """One Table 2 row: PIT training on the engine (002 Sec. 3.3)."""

    def train() -> Path:
        torch.manual_seed(recipe.train.seed)
        model = build_model(row.config)
        data = recipe.data
        train_seconds, _ = mixture_seconds(data)
        train_set = TwoTalkerDataset(mixers.train, size=data.examples_per_epoch, seed=data.seed,
                                     fixed=stages.mixing.fixed_train, seconds=train_seconds)
        valid_set = TwoTalkerDataset(mixers.valid, specs=mixers.valid_specs)
        return fit(model, train_set, valid_set, recipe.train, row.folder, batch_size=data.batch_size,
                   num_workers=data.num_workers, valid_batch_size=data.batch_size,
                   meta={"recipe": recipe.name, "row": row.label}, task=SeparationTask(model, recipe.train))

    return run_stage(row.folder, train)


def architecture(model: torch.nn.Module) -> dict[str, Any]:
    """The hyper-parameter columns of 002 Table 1 / 2: K, M, N, H_i/H_o, L."""
    config = model.config
    if config["name"] == "groupcomm_dprnn_tasnet":
        k, n = config["num_groups"], config["n_filters"]
        return {"K": k, "M": n // k, "N": n, "Hi/Ho": f"{n // k}/{config['hidden_size']}", "L": config["num_layers"]}
    if config["name"] == "dprnn_tasnet":
        n = config["n_filters"]
        return {"K": 1, "M": n, "N": n, "Hi/Ho": f"{config['bottleneck']}/{config['hidden_size']}",
                "L": config["num_layers"]}
    return {}


def write_example(model: torch.nn.Module, mixture: SeparationMixture, folder: Path) -> Path:
    """The mixture, both estimates (matched to the references) and both references, as wavs."""
    estimates = separate(model, mixture.noisy)
    perm = [int(p) for p in score_separation(estimates, mixture.sources, mixture.noisy)["permutation"].split()]
    rate = mixture.sample_rate
    mix_path = save_audio(folder / f"{mixture.id}_mixture.wav", mixture.noisy, rate)
    for j, p in enumerate(perm):
        save_audio(folder / f"{mixture.id}_estimate{j}.wav", estimates[p], rate)
        save_audio(folder / f"{mixture.id}_reference{j}.wav", mixture.sources[j], rate)
    return mix_path


TABLE2_COLUMNS = ["model", "K", "M", "N", "Hi/Ho", "L", "SI-SDR", "SI-SDRi", "params", "size ratio", "MACs",
                  "MACs ratio", "epochs"]


def write_groupcomm_report(recipe: Recipe, stages: GroupCommStages, table: list[dict[str, Any]],
                           results: dict[str, SeparationResult], files: int, seconds: float) -> Path:
    data, mixing = recipe.data, stages.mixing
    lines = report_head(f"{recipe.name}: GroupComm-DPRNN-TasNet vs DPRNN-TasNet (paper 002, Table 2)", data.corpus)
    lines += [
        f"Test: {files} fixed {mixture_seconds(data)[1]:g}-s two-talker mixtures at {data.sample_rate} Hz "
        f"(`test_list.csv`): overlap {mixing.overlap[0]:.0%}-{mixing.overlap[1]:.0%}, relative level "
        f"{mixing.relative_level[0]:g}-{mixing.relative_level[1]:g} dB, noise SNR {data.snr_range or data.snrs} dB, "
        f"T60 {mixing.room.t60[0]:g}-{mixing.room.t60[1]:g} s, targets: {mixing.target} talkers"
        + (f", rooms from a pool of {mixing.rir_pool} per split" if mixing.rir_pool else "") + ".",
        f"Scores: {SI_SDR_CONVENTION}, mean over both talkers under the best permutation of each file. "
        f"Params: all weights; MACs: thop convention (FIDELITY.md `paper`) on {stages.profile_seconds:g}-s "
        "inputs; ratios are how many times smaller than the baseline (002 Table 2's \"(3.9x)\"). "
        f"Training: PIT on {recipe.train.loss.upper().replace('_', '-')}, no A2T; `epochs`: validation "
        "epochs each model ran (the same for all unless early stopping or a time budget ended one).",
        "",
        markdown_table(table, TABLE2_COLUMNS),
        "",
        "## SI-SDRi by overlap ratio",
        "",
    ]
    overlap_rows = []
    for label, result in results.items():
        overlap_rows.append({"model": label, **{b["overlap"]: b["SI-SDRi"] for b in result.by_overlap()}})
    lines += [markdown_table(overlap_rows), "", f"Wall time of the whole run: {seconds / 60:.1f} min."]
    path = recipe.run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path




def _label(config: dict[str, Any]) -> str:
    if "preset" in config:
        extras = {k: v for k, v in config.items() if k not in ("preset", "num_sources")}
        return config["preset"] + "".join(f"-{k}{v}" for k, v in sorted(extras.items()))
    return "-".join(f"{k}{v}" for k, v in sorted(config.items()) if k != "num_sources")


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)

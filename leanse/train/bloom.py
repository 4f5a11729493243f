"""BLOOM-Net (paper 003): scalable enhancement by blockwise optimisation, and its baselines.

The ``bloom`` recipe, top to bottom (:func:`run_bloom`); every training is one call of the one
engine (:func:`leanse.train.engine.fit`) with its own task:

1. **Baseline 1 Int.** (003 Sec. 3.3): one ResNet-TasNet per depth ``l = 1..L``, each trained end
   to end (003 Sec. 2.1). The ``l = L`` model *is* **Baseline 1 Full**: Table 1 prints the same
   8.89 dB for both at ``l = 6``.
2. **Baseline 2** (003 Sec. 2.2, Fig. 2a): a time-domain cascade of one-block models
   ``F^(l): s_hat^(l-1) -> s_hat^(l)``; block ``l`` is trained on the (frozen) output of blocks
   ``1..l-1`` with its own loss ``L^(l)(s, s_hat^(l))``.
3. **BLOOM** (003 Sec. 2.3, eq. 1-2): greedy stages; stage ``l`` trains separator block ``l`` with
   its own masker and decoder on the loss of exit ``l``, everything before it frozen
   (:meth:`~leanse.models.bloom.BloomNet.freeze_below`).
4. **BLOOM-FT** (003 Sec. 2.3, last paragraph): every module of all ``L`` blocks fine-tuned on
   ``sum_l L^(l)(s, s_hat^(l))``.
5. Score every method at every ``l`` on the fixed test list (``evaluate_model(..., blocks=l)``),
   count parameters and separator + masker MACs per ``l``, write Tables 1 and 2, enhance one test
   mixture at every ``l`` (Fig. 3).

The loss is negative SI-SDR (003 eq. 3; ``train.loss``); data per 003 Sec. 3.1: 1-s segments,
unit-variance standardisation (``data.mixture_norm: standardize``), SNR uniform in [-5, 10] dB.

Choices the paper leaves open, and what we do:

* **One model at l = 1.** A one-block model is the same network in all three schemes, and Table 1
  prints 4.55 dB for Baseline 1 Int., Baseline 2 and BLOOM at ``l = 1``: one trained model serves
  as Baseline 1 Int. ``l = 1``, Baseline 2 block 1 and BLOOM stage 1 (whose encoder and bottleneck
  are then frozen, see :mod:`leanse.models.bloom`).
* **Baseline 1 Full at l < L** has one masker and decoder, after block ``L``; as 003 Sec. 4
  describes, we attach that head to the output of block ``l`` (:class:`SingleHeadAfter`).
* **Baseline 2's input** is the previous block's estimate as it comes out (not re-standardised).
* **BLOOM-FT's settings** (learning rate, stopping) are not given: ``stages.finetune.train``
  overrides the recipe's ``train`` (by default nothing changes: 003 states one learning rate).
* Early stopping on the stage's own validation loss picks each stage's best checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from leanse.audio import save_audio
from leanse.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from leanse.complexity import count_parameters, trace_cost
from leanse.data.datamodule import Mixers, build_mixers, fixed_mixtures
from leanse.data.mixing import write_specs
from leanse.enhance import enhance_waveform
from leanse.errors import ConfigError
from leanse.evaluate import EvaluationResult, evaluate_model
from leanse.models import EnhancementModel, build_model
from leanse.models.bloom import BloomNet, Cascade, OnePerDepth, ResNetTasNet, Scalable, SingleHeadAfter
from leanse.report import markdown_table, report_head, spectrogram_figure, text_table
from leanse.train.engine import BEST, EnhancementTask, TrainConfig, torch_threads
from leanse.train.recipe import Recipe, save_recipe
from leanse.train.runner import epochs_trained, fit_mixtures, run_stage
from leanse.train.single import RunResult
from leanse.train.stages import BloomStages, recipe_stages, stage_train_config

METHODS = ("Baseline 1 - Full", "Baseline 1 - Int.", "Baseline 2", "BLOOM", "BLOOM-FT")


# ================================================================================================
# Tasks: what each stage minimises (all on the one engine)
# ================================================================================================


class ExitTask(EnhancementTask):
    """BLOOM greedy stage ``blocks``: the loss of exit ``blocks`` only (003 Sec. 2.3)."""

    def __init__(self, model: BloomNet, config: TrainConfig, blocks: int, parameters: Callable[[], Any]) -> None:
        super().__init__(model, config, parameters)
        self.blocks = blocks

    def compute_loss(self, batch: dict) -> torch.Tensor:
        return self.loss_fn(self.model(batch["noisy"], blocks=self.blocks), batch["clean"])


class AllExitsTask(ExitTask):
    """BLOOM-FT: ``sum_{l=1..L} L^(l)(s, s_hat^(l))`` over all exits of one pass (003 Sec. 2.3)."""

    def __init__(self, model: BloomNet, config: TrainConfig) -> None:
        super().__init__(model, config, model.num_blocks, model.unfreeze)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        exits = self.model.forward_all_exits(batch["noisy"])  # [B, L, T]
        return sum(self.loss_fn(exits[:, l], batch["clean"]) for l in range(exits.shape[1]))


class CascadeStageTask(ExitTask):
    """Baseline 2 block ``l``: a one-block model trained on the output of blocks ``1..l-1``."""

    def __init__(self, model: ResNetTasNet, config: TrainConfig, previous: "Cascade") -> None:
        super().__init__(model, config, 1, lambda: list(model.parameters()))  # type: ignore[arg-type]
        self._previous = (previous.eval().requires_grad_(False),)  # a tuple: not trained, not saved

    def on_fit_start(self) -> None:
        self._previous[0].to(self.device)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            previous = self._previous[0](batch["noisy"])  # [B, T] = s_hat^(l-1)
        return self.loss_fn(self.model(previous), batch["clean"])


# ================================================================================================
# The recipe, top to bottom
# ================================================================================================


@dataclass
class BloomRun:
    """The checkpoints of every method."""

    mixers: Mixers
    baseline1: list[Path]  # l = 1..L (Int.); the last is Full
    baseline2: list[Path]  # block 1..L
    bloom: list[Path]  # stage 1..L (stage L is the finished BLOOM model)
    bloom_ft: Path


def train_bloom(recipe: Recipe) -> BloomRun:
    """Train Baseline 1 Int./Full, Baseline 2, BLOOM and BLOOM-FT (finished stages are kept)."""
    stages = recipe_stages(recipe)  # every stage's train overrides are checked now, not hours later
    run_dir = recipe.run_dir
    save_recipe(recipe, run_dir / "recipe.yaml")
    bloom_config = bloom_model_config(recipe)
    mixers = build_mixers(recipe.data)
    write_specs(run_dir / "test_list.csv", mixers.test_specs)
    with torch_threads(stages.threads):
        return _train_all(recipe, stages, bloom_config, mixers)


def _train_all(recipe: Recipe, stages: BloomStages, bloom_config: dict[str, Any], mixers: Mixers) -> BloomRun:
    run_dir = recipe.run_dir
    depth = bloom_config["num_blocks"]
    # 1. Baseline 1 Int.: one end-to-end model per depth (l = L is Baseline 1 Full).
    config = stage_train_config(recipe.train, stages.baseline1.train, "stages.baseline1.train")
    baseline1 = []
    for l in range(1, depth + 1):
        torch.manual_seed(recipe.train.seed)
        model = build_model({**bloom_config, "name": "resnet_tasnet", "num_blocks": l})
        baseline1.append(_fit(recipe, mixers, model, config, run_dir / "baseline1" / f"l{l}",
                              EnhancementTask(model, config), f"baseline1-l{l}"))

    # 2. Baseline 2: block 1 is the one-block model; block l learns to enhance s_hat^(l-1).
    config = stage_train_config(recipe.train, stages.baseline2.train, "stages.baseline2.train")
    baseline2 = [baseline1[0]]
    for l in range(2, depth + 1):
        previous = Cascade([load_checkpoint(path) for path in baseline2])
        torch.manual_seed(recipe.train.seed + l)  # a fresh one-block model, not a copy of block 1
        model = build_model({**bloom_config, "name": "resnet_tasnet", "num_blocks": 1})
        baseline2.append(_fit(recipe, mixers, model, config, run_dir / "baseline2" / f"block{l}",
                              CascadeStageTask(model, config, previous), f"baseline2-block{l}"))

    # 3. BLOOM: stage 1 is the one-block model; stage l trains block l + exit l, the rest frozen.
    config = stage_train_config(recipe.train, stages.bloom.train, "stages.bloom.train")
    bloom = [bloom_stage_one(bloom_config, baseline1[0], run_dir / "bloom" / "stage1", recipe.train.seed)]
    for l in range(2, depth + 1):
        model = load_checkpoint(bloom[-1]).train()  # checkpoints load in eval mode
        trainable = model.freeze_below(l)
        bloom.append(_fit(recipe, mixers, model, config, run_dir / "bloom" / f"stage{l}",
                          ExitTask(model, config, l, lambda trainable=trainable: trainable), f"bloom-stage{l}"))

    # 4. BLOOM-FT: everything fine-tuned on the sum of all exit losses.
    config = stage_train_config(recipe.train, stages.finetune.train, "stages.finetune.train")
    model = load_checkpoint(bloom[-1]).train()
    bloom_ft = _fit(recipe, mixers, model, config, run_dir / "bloom_ft", AllExitsTask(model, config), "bloom-ft")
    return BloomRun(mixers, baseline1, baseline2, bloom, bloom_ft)


def run_bloom(recipe: Recipe) -> RunResult:
    """Train every method, score each at l = 1..L, count costs, write Tables 1 and 2."""
    stages = recipe_stages(recipe)
    with torch_threads(stages.threads):
        return _run_bloom(recipe, stages)


def _run_bloom(recipe: Recipe, stages: BloomStages) -> RunResult:
    started = time.time()
    trained = train_bloom(recipe)
    methods = scalable_methods(trained)
    depth = methods["BLOOM"].num_blocks
    test_set = fixed_mixtures(trained.mixers.test, trained.mixers.test_specs)

    # Table 1: SI-SDRi of every method at every depth l, all on the same test mixtures.
    results: dict[str, dict[int, EvaluationResult]] = {name: {} for name in methods}
    for name, model in methods.items():
        for l in range(1, depth + 1):
            out = recipe.run_dir / "evaluation" / _slug(name) / f"l{l}"
            results[name][l] = evaluate_model(model, test_set, out_dir=out, workers=recipe.evaluate.workers,
                                              blocks=l)
    table1 = [{"method": name, **{f"l={l}": results[name][l].means["si_sdri"] for l in range(1, depth + 1)}}
              for name in methods]
    table2 = cost_table(methods, stages.profile_seconds)

    figure, enhanced = write_examples(methods["BLOOM-FT"], test_set[0], recipe.run_dir)
    training = [{"stage": str(folder.relative_to(recipe.run_dir)), "epochs": epochs_trained(folder),
                 "best val loss": read_checkpoint_config(folder / BEST)["meta"].get("val_loss")}
                for folder in sorted(p.parent for p in recipe.run_dir.glob("*/**/done"))]
    report = write_bloom_report(recipe, table1, table2, results, figure, training, len(test_set),
                                time.time() - started)
    return RunResult(recipe.run_dir, report, enhanced, text_table(table1), table1)


def bloom_model_config(recipe: Recipe) -> dict[str, Any]:
    """The recipe's model as a BLOOM-Net config (its depth is L; the baselines share its sizes)."""
    model = build_model(recipe.model)
    if not isinstance(model, BloomNet):
        raise ConfigError(f"model: the bloom recipe needs a bloom_net model (e.g. bloom-l6), not {model.config['name']}")
    if model.sample_rate != recipe.data.sample_rate:
        raise ConfigError(f"model runs at {model.sample_rate} Hz but data.sample_rate is {recipe.data.sample_rate}")
    return model.config


def bloom_stage_one(config: dict[str, Any], one_block: Path, folder: Path, seed: int) -> Path:
    """BLOOM stage 1 = the trained one-block model (encoder, bottleneck, block 1, exit 1)."""

    def train() -> None:
        torch.manual_seed(seed)
        bloom = build_model(config)
        state = {key.replace("masker.", "maskers.0.", 1).replace("decoder.", "decoders.0.", 1): value
                 for key, value in load_checkpoint(one_block).state_dict().items()}
        missing, unexpected = bloom.load_state_dict(state, strict=False)
        if unexpected or any(k.startswith(("encoder.", "shared_bottleneck.", "separators.0.", "maskers.0.",
                                           "decoders.0.")) for k in missing):
            raise ConfigError(f"{one_block}: not a one-block model of this BLOOM-Net's sizes")
        save_checkpoint(bloom, folder / BEST, {"stage": "bloom-stage1", "from": str(one_block)})

    return run_stage(folder, train)


def scalable_methods(trained: BloomRun) -> dict[str, Scalable | BloomNet]:
    """The five methods of Table 1, each answering ``forward(wav, blocks=l)``."""
    baseline1 = [load_checkpoint(path) for path in trained.baseline1]
    return {
        "Baseline 1 - Full": SingleHeadAfter(baseline1[-1]),
        "Baseline 1 - Int.": OnePerDepth(baseline1),
        "Baseline 2": Cascade([load_checkpoint(path) for path in trained.baseline2]),
        "BLOOM": load_checkpoint(trained.bloom[-1]),
        "BLOOM-FT": load_checkpoint(trained.bloom_ft),
    }


def cost_table(methods: dict[str, nn.Module], seconds: float) -> list[dict[str, Any]]:
    """003 Table 2: separator + masker MACs per ``l`` and the parameters a scalable system stores.

    Baseline 1 must keep every model of depth ``1..l`` to offer all profiles up to ``l``
    (cumulative); BLOOM keeps blocks ``1..l`` with their exits. MACs: thop (``paper``) convention,
    encoder and decoder left out, as 003 counts.
    """
    bloom: BloomNet = methods["BLOOM"]  # type: ignore[assignment]
    per_depth: list[ResNetTasNet] = list(methods["Baseline 1 - Int."].models)  # type: ignore[union-attr]
    depth = bloom.num_blocks
    macs, b1_params, bloom_params, b2_params = {}, {}, {}, {}
    cumulative = 0
    for l in range(1, depth + 1):
        view = bloom.separator_masker(l)
        macs[l] = trace_cost(view, view.example_input(seconds), "paper").macs / seconds
        cumulative += count_parameters(per_depth[l - 1])
        b1_params[l] = cumulative
        # BLOOM up to l: encoder, bottleneck, blocks 1..l and exits 1..l.
        bloom_params[l] = count_parameters(build_model({**bloom.config, "num_blocks": l}))
        b2_params[l] = l * count_parameters(per_depth[0])
    baseline_macs = {l: _separator_masker_macs(per_depth[l - 1], seconds) for l in range(1, depth + 1)}
    cols = range(1, depth + 1)
    return [
        {"": "MACs/s Baseline 1", **{f"l={l}": _si(baseline_macs[l]) for l in cols}},
        {"": "MACs/s BLOOM", **{f"l={l}": _si(macs[l]) for l in cols}},
        {"": "Params Baseline 1 (models 1..l)", **{f"l={l}": _si(b1_params[l]) for l in cols}},
        {"": "Params BLOOM", **{f"l={l}": _si(bloom_params[l]) for l in cols}},
        {"": "Params Baseline 2 (l one-block models)", **{f"l={l}": _si(b2_params[l]) for l in cols}},
    ]


def _separator_masker_macs(model: ResNetTasNet, seconds: float) -> float:
    view = model.separator_masker()
    return trace_cost(view, view.example_input(seconds), "paper").macs / seconds


def write_examples(model: BloomNet, mixture: Any, run_dir: Path) -> tuple[Path, Path]:
    """003 Fig. 3: one test mixture enhanced at every depth (wavs and stacked spectrograms)."""
    rate = mixture.sample_rate
    signals = {"noisy": mixture.noisy}
    folder = run_dir / "examples"
    save_audio(folder / f"{mixture.id}_noisy.wav", mixture.noisy, rate)
    save_audio(folder / f"{mixture.id}_clean.wav", mixture.clean, rate)
    last = folder
    for l in range(1, model.num_blocks + 1):
        enhanced = enhance_waveform(model, mixture.noisy, rate, blocks=l)
        last = save_audio(folder / f"{mixture.id}_bloom_ft_l{l}.wav", enhanced, rate)
        signals[f"BLOOM-FT, l = {l}"] = enhanced
    signals["clean"] = mixture.clean
    # The figure's colour scale expects speech-level signals (RMS ~0.05), not unit-variance ones.
    scale = 0.05 / (float(mixture.noisy.std()) + 1e-8)
    figure = spectrogram_figure({k: v * scale for k, v in signals.items()}, rate, run_dir / "blocks.png")
    return figure, last


def write_bloom_report(recipe: Recipe, table1: list[dict], table2: list[dict],
                       results: dict[str, dict[int, EvaluationResult]], figure: Path, training: list[dict],
                       files: int, seconds: float) -> Path:
    data = recipe.data
    depth = len(table1[0]) - 1
    any_result = results["BLOOM"][depth]
    lines = report_head(f"{recipe.name}: BLOOM-Net and its baselines (paper 003, Tables 1 and 2)", data.corpus)
    lines += [
        f"Test: {files} fixed mixtures (`test_list.csv`) at {data.sample_rate} Hz, "
        f"{data.eval_segment_seconds or 'whole-utterance'} s, SNR {data.snr_range or data.snrs} dB, "
        f"mixture norm {data.mixture_norm}; noisy input SI-SDR {any_result.means['si_sdr_noisy']:.2f} dB. "
        f"Every method at depth l is run with `blocks=l`; Baseline 1 - Full attaches its one head after block l.",
        "",
        "## Table 1: SI-SDRi (dB)",
        "",
        markdown_table(table1),
        "",
        f"{any_result.table().splitlines()[-1]}",
        "",
        "## Table 2: cost per depth l",
        "",
        "MACs per second of input (thop / `paper` convention), separator + masker only, as 003 counts. "
        "Params: what a system offering every profile up to l must store.",
        "",
        markdown_table(table2),
        "",
        "## The paper's claims at this scale",
        "",
        *claims(table1),
        "",
        "## PESQ / STOI at the top profile",
        "",
        markdown_table([{"method": name, "PESQ": r[depth].means.get("pesq"), "STOI": r[depth].means.get("stoi"),
                         "ESTOI": r[depth].means.get("estoi")} for name, r in results.items()]),
        "",
        f"![one test mixture enhanced by BLOOM-FT at every depth]({figure.name})",
        "",
        "## Training",
        "",
        "Validation epochs each stage ran and its best validation loss (BLOOM-FT: the sum over all exits). "
        "Stage 1 of BLOOM and block 1 of Baseline 2 are `baseline1/l1`.",
        "",
        markdown_table(training),
        "",
        f"Wall time of the whole run: {seconds / 60:.1f} min.",
    ]
    path = recipe.run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def claims(table1: list[dict[str, Any]]) -> list[str]:
    """The three claims of 003 Sec. 4, checked on the measured numbers (never tuned for)."""
    rows = {row["method"]: [row[k] for k in row if k.startswith("l=")] for row in table1}
    bloom, full, ft = rows["BLOOM"], rows["Baseline 1 - Full"], rows["BLOOM-FT"]
    depth = len(bloom)
    steps = [b - a for a, b in zip(bloom, bloom[1:])]
    verdict = lambda ok: "holds" if ok else "does NOT hold"  # noqa: E731
    lines = [
        f"- BLOOM's SI-SDRi does not fall as l grows: {verdict(all(s >= 0 for s in steps))} "
        f"(steps l -> l+1: {', '.join(f'{s:+.2f}' for s in steps)} dB).",
        f"- Baseline 1 - Full collapses below l = L (criterion: below BLOOM at every l < L and below its own "
        f"l = L): {verdict(all(full[i] < bloom[i] and full[i] < full[-1] for i in range(depth - 1)))} "
        f"(Full: {', '.join(f'{v:.2f}' for v in full)} dB).",
        f"- BLOOM-FT improves the top profile: {verdict(ft[-1] > bloom[-1])} "
        f"(l = {depth}: BLOOM {bloom[-1]:.2f}, BLOOM-FT {ft[-1]:.2f} dB, {ft[-1] - bloom[-1]:+.2f} dB).",
    ]
    return lines


# ================================================================================================


def _fit(recipe: Recipe, mixers: Mixers, model: EnhancementModel, config: TrainConfig, folder: Path,
         task: EnhancementTask, stage: str) -> Path:
    """One stage on the engine; a finished stage (``best/`` + ``done``) is not trained again."""
    return run_stage(folder, lambda: fit_mixtures(recipe, model, mixers, config, folder, task, {"stage": stage}))


def _slug(name: str) -> str:
    return name.lower().replace(" - ", "_").replace(".", "").replace(" ", "_")


def _si(value: float) -> str:
    """003 Table 2's style: 0.53G MACs, 0.28M params (a unit from a tenth of it up)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= 0.1 * scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"

"""004's C1 / C2 pipelines end to end on two model families (tiny), via `leanse compress`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from leanse.checkpoint import load_checkpoint, save_checkpoint
from leanse.cli import main
from leanse.compress import Pruner, prunable_tensors, quantize_model, save_packed
from leanse.errors import ConfigError
from leanse.models import build_model

torch.set_num_threads(1)


def _recipe(tmp_path: Path, corpus_root: Path, **compress) -> Path:
    recipe = {
        "name": "compress-test",
        "model": {"preset": "tiny-mask-rnn"},
        "data": {"corpus": "librispeech", "root": str(corpus_root), "snrs": [0, 5],
                 "examples_per_epoch": 16, "valid_size": 4, "test_size": 4, "batch_size": 8,
                 "eval_segment_seconds": 1.0},
        "train": {"accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1,
                  "loss": "si_sdr", "threads": 1},
        "compress": {"fine_tune_epochs": 1, "max_iterations": 2, "sensitivity_size": 4,
                     "score_size": 4, "ratios": [0.0, 0.25, 0.5, 0.75, 0.9],
                     "alpha_prune": 0.2, "alpha_quant": 0.5, "stoi_drop": 1.0,
                     "pesq_drop": 5.0, "max_bits": 6, **compress},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("preset,pipeline", [("tiny-mask-rnn", "c1"), ("tiny-fdnn", "c2"),
                                             ("tiny-sparse-ensemble", "c2")])
def test_pipeline_compresses_reloads_and_never_touches_the_input(tmp_path, corpus_root, capsys,
                                                                 preset, pipeline):
    torch.manual_seed(0)
    source = save_checkpoint(build_model(preset), tmp_path / "model")
    before = _digest(source)
    recipe = _recipe(tmp_path, corpus_root)
    out = tmp_path / "out"
    assert main(["compress", str(source), "--pipeline", pipeline, "--data", str(recipe),
                 "-o", str(out)]) == 0
    assert '"rate_by_file"' in capsys.readouterr().out
    assert _digest(source) == before  # the input checkpoint is only read
    state = json.loads((out / "compress.json").read_text())
    assert state["history"] and state["history"][0]["removed"] > 0
    packed = load_checkpoint(out / "packed")
    pruned = load_checkpoint(out / "pruned")
    left = Pruner.from_zeros(pruned).sparsity()
    assert left > 0.2  # pruning happened
    sizes = state["sizes"]
    assert sizes["input_bytes"] == sum(t.numel() * 4 for t in build_model(preset).state_dict().values())
    assert sizes["file_bytes"] < sizes["input_bytes"] / 3 and sizes["rate_by_file"] > 3
    for spec in prunable_tensors(packed):
        assert torch.unique(spec.weight.detach()).numel() <= 2 ** 6 + 1  # codebook + zero
    wav = torch.randn(1, 16000)
    with torch.no_grad():
        assert torch.isfinite(packed(wav)).all()
    from leanse.compress.report import write_compression_report
    from leanse.train.recipe import load_recipe

    report = write_compression_report(source, [out], load_recipe(recipe), tmp_path / "report",
                                      rtf_seconds=0.5)
    text = report.read_text()
    assert "| uncompressed |" in text and f"({pipeline.upper()})" in text
    assert (tmp_path / "report" / "compression.png").stat().st_size > 10_000
    if pipeline == "c2" and (out / "shrunk").is_dir():
        shrunk = load_checkpoint(out / "shrunk")
        assert sum(p.numel() for p in shrunk.parameters()) < sum(p.numel() for p in pruned.parameters())
    if preset == "tiny-sparse-ensemble":  # each specialist and the gate compressed, all scored
        assert all(Pruner.from_zeros(part).sparsity() > 0 for part in [*pruned.specialists, pruned.gate])
        assert len(state["base_exit_losses"]) == len(state["final_exit_losses"]) == 1 + 4

    # resumable: a second call finds every iteration done and trains nothing again
    mtimes = {p: p.stat().st_mtime for p in (out / "work").rglob("*.safetensors")}
    assert main(["compress", str(source), "--pipeline", pipeline, "--data", str(recipe),
                 "-o", str(out)]) == 0
    assert {p: p.stat().st_mtime for p in (out / "work").rglob("*.safetensors")} == mtimes
    assert json.loads((out / "compress.json").read_text())["history"] == state["history"]


def test_compress_bad_input_is_one_line(tmp_path, corpus_root, capsys):
    source = save_checkpoint(build_model("tiny-mask-rnn"), tmp_path / "model")
    recipe = _recipe(tmp_path, corpus_root)
    for args, expected in [
        (["--alpha", "-1", "0.1"], "tolerance"),
        (["-o", str(source)], "must not be the input"),
    ]:
        code = main(["compress", str(source), "--pipeline", "c1", "--data", str(recipe), *args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and expected in err and "\n" not in err
    code = main(["compress", str(source), "--pipeline", "c1", "--data", str(recipe),
                 "--set", "compress.max_bits=12"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "max_bits" in err
    model = build_model("tiny-mask-rnn")
    packed = save_packed(model, tmp_path / "packed", quantize_model(model, 2, max_iter=5))
    code = main(["compress", str(packed), "--pipeline", "c2", "--data", str(recipe)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "already a compressed" in err


def test_regularizer_in_the_engine_decays_per_iteration_and_sparsifies():
    """train.regularizer adds Eq. (7) / (9) to the loss; lambdas x0.9 per pruning iteration."""
    from leanse.compress.regularizers import RegularizerConfig, regularization
    from leanse.train.engine import EnhancementTask, TrainConfig

    config = RegularizerConfig("sgl", weight=1.0, group_weight=0.5)
    assert config.scaled(3).weight == pytest.approx(0.729)
    assert config.scaled(3).group_weight == pytest.approx(0.5 * 0.729)
    torch.manual_seed(0)
    model = build_model("tiny-mask-rnn")
    task = EnhancementTask(model, TrainConfig(regularizer=RegularizerConfig("l1", 1e3)))
    batch = {"noisy": torch.randn(2, 4000), "clean": torch.randn(2, 4000), "id": ["a", "b"]}
    task.log = lambda *a, **k: None  # outside a Trainer
    plain = task.compute_loss(batch)
    total = task.training_step(batch, 0)
    assert float(total - plain) == pytest.approx(float(regularization(model, task.config.regularizer)),
                                                 rel=1e-4)
    with pytest.raises(ConfigError, match="regularizer.kind"):
        RegularizerConfig("l2")


def test_004_objectives_are_zero_at_the_target_and_positive_elsewhere():
    """004 Sec. III-C: MSE over T-F units -- magnitudes (LSTM), real / imaginary parts (GCRN),
    the IRM (FDNN) -- or time samples (TCNN: ``mse``)."""
    from leanse.losses import get_loss

    g = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 8000, generator=g) * 0.1
    noise = torch.randn(2, 8000, generator=g) * 0.1
    noisy = clean + noise
    for name in ("tf_magnitude_mse", "tf_complex_mse"):
        loss = get_loss(name)
        assert float(loss(clean, clean)) == pytest.approx(0.0, abs=1e-10)
        assert float(loss(noisy, clean)) > 1e-4
    irm = get_loss("irm_mse")
    assert irm.needs_noisy
    # the noisy input itself is mask 1 everywhere: its error is the mean of (1 - IRM)^2 > 0
    assert float(irm(noisy, clean, noisy)) > 0.05
    # a masking model that applies the IRM itself scores (up to STFT consistency) ~0
    from leanse.losses import _spec_004
    from leanse.models.compression_baselines import _stft

    spec, speech = _spec_004(noisy), _spec_004(clean)
    ideal = torch.sqrt(speech.abs() ** 2 / (speech.abs() ** 2 + (spec - speech).abs() ** 2 + 1e-8))
    masked = _stft().inverse(spec * ideal, length=8000)
    assert float(irm(masked, clean, noisy)) < 0.1 * float(irm(noisy, clean, noisy))


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("recipes/compression/*.yaml")))
def test_compression_recipes_load_with_valid_compress_sections(path):
    from leanse.compress.pipeline import CompressConfig
    from leanse.config import from_dict
    from leanse.losses import get_loss
    from leanse.train.recipe import load_recipe

    recipe = load_recipe(path)
    config = from_dict(CompressConfig, dict(recipe.compress), "compress")
    build_model(recipe.model)
    get_loss(recipe.train.loss)
    if "paper" in path.name:
        assert recipe.train.optimizer == "amsgrad" and recipe.train.lr == 0.001
        assert (recipe.train.lr_decay, recipe.train.lr_decay_every) == (0.98, 2)
        assert config.decay == 0.9


def _scorer(batch: list) -> "object":
    """The pipeline's validation scorer on a hand-made batch (``.noisy`` / ``.clean`` arrays)."""
    from leanse.compress.pipeline import _Validation
    from leanse.losses import get_loss

    validation = _Validation.__new__(_Validation)
    validation.loss_fn = get_loss("si_sdr")
    validation.batch = batch
    return validation


def _mixtures(target: Callable, rate: int, count: int = 2) -> list:
    """Noise inputs whose "clean" targets are what ``target`` makes of them: ``target`` is the
    perfect model of this batch, so pruning any of its weights costs something."""
    from types import SimpleNamespace

    generator = torch.Generator().manual_seed(3)
    noisy = [torch.randn(1, rate // 2, generator=generator) for _ in range(count)]
    with torch.no_grad():
        return [SimpleNamespace(noisy=x[0].numpy(), clean=target(x)[0].numpy()) for x in noisy]


def test_sensitivity_charges_a_specialist_that_the_gate_never_picks():
    """Hard gating runs only the chosen specialist: scored on the gated output alone, a specialist
    nobody is routed to would look free to prune entirely (Algorithm 1 would pick 100 %). The
    pipeline also scores each specialist on the whole batch, so its tensors keep their cost."""
    from leanse.compress import pruning_sensitivity

    torch.manual_seed(0)
    model = build_model("tiny-sparse-ensemble").eval()
    with torch.no_grad():  # the gate always picks specialist 0
        for parameter in model.gate.parameters():
            parameter.zero_()
        model.gate.dense.bias[0] = 5.0
    validation = _scorer(_mixtures(model.specialists[3], model.sample_rate))
    assert len(validation.exit_losses(model)) == 1 + model.num_experts
    name = "specialists.3.dense.weight"
    tensors = [s for s in prunable_tensors(model) if s.name == name]

    def gated_only(m: torch.nn.Module) -> float:
        return -validation.exit_losses(m)[0]

    ratios = [0.0, 0.5, 1.0]
    assert pruning_sensitivity(model, gated_only, 0.1, ratios, tensors=tensors)[name]["chosen"] == 1.0
    table = pruning_sensitivity(model, validation.negative_loss, 0.1, ratios, tensors=tensors)
    assert table[name]["chosen"] < 1.0


def test_sensitivity_of_a_bloom_net_sees_every_exit():
    """003: BLOOM-Net must stay usable at every exit. The first exit's masker feeds only exit 1;
    scored on the last exit alone it would look free to prune, scored on every exit it is not."""
    from leanse.compress import pruning_sensitivity

    torch.manual_seed(0)
    model = build_model("tiny-bloom").eval()
    validation = _scorer(_mixtures(lambda x: model(x, blocks=1), model.sample_rate))
    assert len(validation.exit_losses(model)) == model.num_blocks
    name = next(s.name for s in prunable_tensors(model) if s.name.startswith("maskers.0."))
    tensors = [s for s in prunable_tensors(model) if s.name == name]

    def last_exit_only(m: torch.nn.Module) -> float:
        return -validation.exit_losses(m)[-1]

    ratios = [0.0, 0.5, 1.0]
    assert pruning_sensitivity(model, last_exit_only, 0.01, ratios, tensors=tensors)[name]["chosen"] == 1.0
    table = pruning_sensitivity(model, validation.negative_loss, 0.01, ratios, tensors=tensors)
    assert table[name]["chosen"] < 1.0


def test_fine_tuning_a_sparse_ensemble_trains_its_gate():
    """000 fine-tunes an ensemble with soft gating (eq. 4-5) because hard gating (eq. 3) is an
    arg-max: the gate gets no gradient from the enhancement loss. The compression fine-tune does
    the same, so 004's sparse penalty is not the only force on a trained gate (alone it would
    shrink the gate towards zero), and the model is validated as it runs, with hard gating."""
    from leanse.compress.pipeline import _task_class
    from leanse.train.engine import EnhancementTask, TrainConfig

    torch.manual_seed(0)
    model = build_model("tiny-sparse-ensemble").train()
    config = TrainConfig()  # no penalty: only the enhancement loss's gradient is looked at
    batch = {"noisy": torch.randn(4, 8000), "clean": torch.randn(4, 8000), "id": ["a", "b", "c", "d"]}

    model.mode = "hard"  # what a plain enhancement fine-tune of the hard-gated model would do
    model.zero_grad(set_to_none=True)
    EnhancementTask(model, config).compute_loss(batch).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.gate.parameters())

    task = _task_class(model)(model, config)
    model.zero_grad(set_to_none=True)
    task.training_step(batch, 0).backward()
    assert model.mode == "soft"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gate.parameters())
    task.validation_step(batch, 0)
    assert model.mode == "hard"  # validated as it runs: one specialist per utterance


def test_a_gate_is_pruned_by_its_decisions_not_to_nothing():
    """000's gate picks a specialist. When the specialists are alike, a wrong pick barely moves
    the ensemble's loss, so on the loss alone (004's I_U) every gate tensor looks free to prune
    (Algorithm 1 picks 100 %) and the ensemble would become one specialist for all inputs. The
    pipeline analyses gate tensors on the share of validation utterances routed differently."""
    from types import SimpleNamespace

    from leanse.compress import pruning_sensitivity
    from leanse.compress.pipeline import CompressConfig, _sensitivity

    torch.manual_seed(0)
    model = build_model("tiny-sparse-ensemble").eval()
    for specialist in model.specialists[1:]:  # interchangeable specialists: routing costs no loss
        specialist.load_state_dict(model.specialists[0].state_dict())
    generator = torch.Generator().manual_seed(1)
    batch = []
    for scale in torch.logspace(-2, 1, 24).tolist():  # loud and quiet inputs: the gate's picks vary
        noisy = scale * torch.randn(1, 4000, generator=generator)
        with torch.no_grad():
            batch.append(SimpleNamespace(noisy=noisy[0].numpy(), clean=model.specialists[0](noisy)[0].numpy()))
    validation = _scorer(batch)
    validation.routed = batch
    assert len(set(validation.routes(model))) > 1  # a gate that decides something
    gate = [s for s in prunable_tensors(model) if s.name.startswith("gate.")]
    config = CompressConfig(ratios=[0.0, 0.5, 1.0], alpha_prune=0.1, gate_tolerance=0.05)

    on_loss = pruning_sensitivity(model, validation.negative_loss, 0.1, config.ratios, tensors=gate)
    assert all(row["chosen"] == 1.0 for row in on_loss.values())
    on_decisions = _sensitivity(model, validation, config, gate)
    assert set(on_decisions) == set(on_loss)
    assert min(row["chosen"] for row in on_decisions.values()) < 1.0
    assert validation.agreement(model)(model) == 1.0

"""The one training engine: any leanse model, any waveform loss, one Lightning ``Trainer``.

Everything the papers' training sections ask for is a setting of :class:`TrainConfig`: Adam or
AMSGrad, a step learning-rate decay (002: x0.98 every two epochs), gradient-norm clipping (002: 5),
early stopping on the validation loss (002: 10 epochs), and a wall-clock budget for the tiny
recipes. Multi-GPU / multi-node training is Lightning's DDP: set ``devices`` / ``num_nodes`` /
``strategy``, no code changes. Multi-stage methods (ensembles, BLOOM) call :func:`fit` once per
stage with their own model and data.

A run folder holds::

    recipe.yaml            the resolved recipe
    lightning/last.ckpt    Lightning's resumable state (trusted: written by this run only)
    best/                  the best model by validation loss, as a leanse checkpoint (safetensors)
    metrics.csv            the training curve (CSV logger)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from leanse.checkpoint import save_checkpoint
from leanse.compress.regularizers import RegularizerConfig, regularization
from leanse.data.datamodule import MixtureDataset
from leanse.errors import ConfigError
from leanse.losses import get_loss
from leanse.models import EnhancementModel

BEST = "best"


@dataclass
class TrainConfig:
    max_epochs: int = 100
    max_steps: int = -1
    max_minutes: float | None = None  # wall-clock budget; training stops cleanly when it is spent
    optimizer: str = "adam"  # adam | amsgrad
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_decay: float = 1.0  # multiply the learning rate by this ...
    lr_decay_every: int = 1  # ... every this many epochs (002: 0.98 every 2)
    grad_clip: float | None = None  # max gradient L2 norm (002: 5)
    early_stop_patience: int | None = None  # epochs without validation improvement (002: 10)
    loss: str = "si_sdr"  # si_sdr | snr | mse
    accelerator: str = "auto"
    devices: Any = 1  # int, list of ids or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several devices / nodes
    precision: str = "32-true"
    checkpoint_every_steps: int = 200  # resumable state is saved this often (and each epoch)
    log_every_n_steps: int = 10
    progress_bar: bool = True  # on a terminal; elsewhere (CI, a log file) one line per epoch
    seed: int = 0
    threads: int | None = None  # torch threads for training (None: torch's default)
    trace: bool = False  # write the mixture ids each rank saw (checks data-parallel sharding)
    regularizer: RegularizerConfig | None = None  # 004 eqs. 7-9: {kind: l1|sgl, weight, ...}
    # Warm start (fine-tuning): a checkpoint (folder, file or bundled name) whose weights replace
    # the fresh ones; its architecture must equal the recipe's model. The optimizer starts afresh.
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "amsgrad"):
            raise ConfigError(f"train.optimizer: expected adam or amsgrad, got {self.optimizer!r}")
        get_loss(self.loss)


def build_optimizer(parameters: Any, config: TrainConfig) -> dict[str, Any]:
    """Adam or AMSGrad with a step learning-rate decay, as Lightning's ``configure_optimizers``
    returns it; every task of every stage uses this one."""
    optimizer = torch.optim.Adam(
        parameters, lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.optimizer == "amsgrad"
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_every, gamma=config.lr_decay)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class EnhancementTask(L.LightningModule):
    """Trains a waveform-in, waveform-out model on a waveform loss (negative SI-SDR by default)."""

    def __init__(self, model: EnhancementModel, config: TrainConfig, parameters: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.loss_fn = get_loss(config.loss)
        # Multi-stage recipes (e.g. BLOOM's greedy stages) train only part of the model.
        self.trainable = parameters or (lambda: [p for p in self.model.parameters() if p.requires_grad])
        self.seen_ids: list[str] = []

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.model(noisy)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """The training objective of one batch; stages with another objective override this."""
        estimate = self.model(batch["noisy"])
        if getattr(self.loss_fn, "needs_noisy", False):  # e.g. 004's IRM target
            return self.loss_fn(estimate, batch["clean"], batch["noisy"])
        return self.loss_fn(estimate, batch["clean"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.config.trace:
            self.seen_ids.extend(batch["id"])
        loss = self.compute_loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch["noisy"]))
        if self.config.regularizer is not None:  # sparse regularisation (004 Sec. II-C)
            penalty = regularization(self.model, self.config.regularizer)
            self.log("penalty", penalty, on_step=True, on_epoch=True, batch_size=len(batch["noisy"]))
            loss = loss + penalty
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.compute_loss(batch)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["noisy"]))

    def configure_optimizers(self) -> Any:
        return build_optimizer(self.trainable(), self.config)

    def on_train_epoch_start(self) -> None:
        # New mixtures every epoch; the dataset seeds each draw by (seed, epoch, index).
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, MixtureDataset):
            dataset.set_epoch(self.current_epoch)


class ExportBest(Callback):
    """Writes the best model so far (lowest validation loss) as a leanse checkpoint.

    The best loss travels in Lightning's resumable state (``state_dict`` / ``load_state_dict``), so
    a killed run that resumes into worse epochs keeps the good ``best/`` instead of overwriting it
    with its first validation.
    """

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.meta = meta
        self.best = float("inf")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict.get("best", float("inf")))

    def on_validation_end(self, trainer: L.Trainer, task: EnhancementTask) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val_loss")
        if value is None or not trainer.is_global_zero:
            return
        value = float(value)
        if value < self.best:
            self.best = value
            meta = {**self.meta, "val_loss": value, "epoch": trainer.current_epoch, "step": trainer.global_step}
            save_checkpoint(task.model, self.folder, meta)


class EpochLines(Callback):
    """One line per epoch on stderr, for logs that are not a terminal (CI, ``| tee log``), where a
    progress bar would write thousands of carriage-return frames."""

    def on_train_start(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        values = [f"{name} {float(metrics[key]):.4f}" for name, key in
                  (("train_loss", "train_loss_epoch"), ("val_loss", "val_loss")) if key in metrics]
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {trainer.global_step}  "
              f"{'  '.join(values)}  {time.monotonic() - self.started:.0f} s", file=sys.stderr, flush=True)


def show_progress_bar(config: "TrainConfig") -> bool:
    """A bar only when asked for and stderr is a terminal; otherwise :class:`EpochLines`."""
    return bool(config.progress_bar) and sys.stderr.isatty()


def _loader(dataset: MixtureDataset, batch_size: int, workers: int, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=False,  # workers are re-created each epoch and see the new epoch seed
        drop_last=shuffle,
    )


def fit(
    model: EnhancementModel,
    train_set: MixtureDataset,
    valid_set: MixtureDataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    batch_size: int = 16,
    num_workers: int = 0,
    valid_batch_size: int = 1,
    meta: dict[str, Any] | None = None,
    parameters: Callable[[], Any] | None = None,
    task: L.LightningModule | None = None,
) -> Path:
    """Train ``model`` and return the folder of its best leanse checkpoint.

    If ``run_dir/lightning/last.ckpt`` exists (a run that was killed), training resumes from it.
    ``task`` replaces the default :class:`EnhancementTask` (e.g. a gate or speaker-verification
    task of :mod:`leanse.train.classify`); it must hold ``model`` as ``task.model`` and log
    ``val_loss``, which picks the exported best checkpoint.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    _quiet_lightning()
    if task is None:
        task = EnhancementTask(model, config, parameters)
    elif task.model is not model:
        raise ConfigError("fit(task=...): the task must train the model it is given (task.model is model)")
    state_dir = run_dir / "lightning"
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=state_dir, filename="last", save_last=False, save_top_k=1,
                        monitor=None, every_n_train_steps=config.checkpoint_every_steps, enable_version_counter=False),
        ModelCheckpoint(dirpath=state_dir, filename="last", save_top_k=1, monitor=None,
                        every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False),
        ExportBest(run_dir / BEST, meta or {}),
    ]
    if config.early_stop_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=config.early_stop_patience))
    bar = show_progress_bar(config)
    callbacks.append(TQDMProgressBar(refresh_rate=max(1, config.log_every_n_steps)) if bar else EpochLines())
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
        max_time={"minutes": config.max_minutes} if config.max_minutes else None,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        gradient_clip_val=config.grad_clip,
        gradient_clip_algorithm="norm",
        callbacks=callbacks,
        logger=CSVLogger(run_dir, name="", version="logs"),
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    resume = state_dir / "last.ckpt"
    with torch_threads(config.threads):
        trainer.fit(
            task,
            train_dataloaders=_loader(train_set, batch_size, num_workers, shuffle=True),
            val_dataloaders=_loader(valid_set, valid_batch_size, num_workers, shuffle=False),
            ckpt_path=str(resume) if resume.is_file() else None,
        )
    if config.trace:
        trace = {
            "rank": trainer.global_rank,
            "ids": getattr(task, "seen_ids", []),
            "weights_checksum": float(sum(p.detach().double().sum() for p in model.parameters())),
        }
        (run_dir / f"trace-rank{trainer.global_rank}.json").write_text(json.dumps(trace))
    if trainer.is_global_zero and not (run_dir / BEST).exists():
        save_checkpoint(model, run_dir / BEST, meta or {})  # no validation ran: keep the last weights
    return run_dir / BEST


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch threads (``None``: unchanged); restored afterwards. One thread is
    much faster for tiny models on a busy two-core machine (OpenMP threads spin while waiting)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quiet_lightning() -> None:
    # Lightning's tips (num_workers, GPU availability, ...) drown the progress bar on a CPU box.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")

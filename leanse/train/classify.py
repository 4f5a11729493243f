"""Classifier training on the one engine: gates (000), the Siamese speaker embedding and the
speaker-group classifier (001).

These models output labels, not waveforms, so they get their own Lightning tasks, and
:func:`leanse.train.engine.fit` runs them through ``fit(..., task=...)`` -- same checkpoints,
resume, early stopping, logs and DDP as every other stage. Each task logs ``val_loss`` (which picks
the exported best checkpoint) and ``val_acc``.

- :class:`GateTask`: an utterance classifier (``RNNGate`` or ``SpeakerGate``) on the label of each
  training mixture -- its SNR class, its speaker's sex or its speaker group. Loss: binary cross
  entropy between the softmax and the one-hot label (000 Sec. 3, :func:`gate_bce_loss`). 001 Sec. 2.4
  says only that ``g`` is trained on one-hot k-means labels; we use the same BCE for it.
- :class:`VerificationTask`: the embedding ``f`` through :class:`SiameseVerifier` on pairs of noisy
  utterances (:class:`PairDataset`), BCE on ``sigmoid(<f(x_i), f(x_j)>)`` (001 Sec. 2.2).

Below them: :func:`load_gate` (a gate checkpoint; gates are not enhancement models, so
:func:`leanse.checkpoint.load_checkpoint` does not build them), :func:`predict_classes` (a gate's
arg-max over fixed mixtures, for per-class accuracy) and :func:`embed_utterances` (001 Sec. 2.3:
``z <- f(s)`` for every training utterance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.utils.data import Dataset

from leanse.checkpoint import WEIGHTS, checkpoint_folder, read_checkpoint_config
from leanse.data.mixing import EPS, AudioReader, Mixer, MixingOptions, example_rng
from leanse.data.records import Mixture, NoiseRecording, Utterance
from leanse.ensemble.gates import Gate, UtteranceNet, build_gate, gate_bce_loss
from leanse.ensemble.speaker import SiameseVerifier, SpeakerEmbedding, verification_pairs
from leanse.errors import CheckpointError, ConfigError, LeanseError
from leanse.train.engine import TrainConfig, build_optimizer

#: Labels a gate can learn, as named in the items of :class:`~leanse.data.datamodule.MixtureDataset`.
LABELS = ("snr_class", "gender_class", "group")


def batch_labels(batch: dict[str, Any], label: str) -> torch.Tensor:
    """The ``[B]`` class indices of a batch; a mixture without a label is an error, not class -1."""
    if label not in LABELS:
        raise ConfigError(f"gate label must be one of {', '.join(LABELS)}, not {label!r}")
    if label == "group":  # speaker groups travel as strings ("" = speaker not in groups.json)
        values = batch["group"]
        if any(v == "" for v in values):
            raise LeanseError("some training speakers have no group in groups.json; re-run the clustering stage")
        return torch.tensor([int(v) for v in values], dtype=torch.long)
    labels = batch[label].long()
    if (labels < 0).any():
        what = "speaker sex (M/F)" if label == "gender_class" else "SNR class (data.snrs, not snr_range)"
        raise LeanseError(f"some training mixtures have no {what}, which the gate learns to predict")
    return labels


class _ClassifierTaskBase(L.LightningModule):
    """Adam as in the enhancement task, new draws every epoch, only trainable parameters."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def configure_optimizers(self) -> Any:
        # Only trainable parameters: a frozen f stays frozen (001 Sec. 2.4).
        return build_optimizer([p for p in self.model.parameters() if p.requires_grad], self.config)

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def _log(self, stage: str, loss: torch.Tensor, correct: torch.Tensor, size: int) -> None:
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, prog_bar=True, on_step=on_step, on_epoch=True, sync_dist=not on_step,
                 batch_size=size)
        self.log(f"{stage}_acc", correct.float().mean(), prog_bar=True, on_step=False, on_epoch=True,
                 sync_dist=not on_step, batch_size=size)


class GateTask(_ClassifierTaskBase):
    """Trains a gate ``[B, T] -> [B, K]`` logits on one label of each mixture (000 Sec. 3)."""

    def __init__(self, gate: Gate, config: TrainConfig, label: str) -> None:
        super().__init__(gate, config)
        if label not in LABELS:
            raise ConfigError(f"gate label must be one of {', '.join(LABELS)}, not {label!r}")
        self.label = label

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        labels = batch_labels(batch, self.label).to(batch["noisy"].device)
        logits = self.model(batch["noisy"])  # [B, K]
        if int(labels.max()) >= logits.shape[-1]:
            raise ConfigError(
                f"a mixture has class {int(labels.max())} but the gate has only K={logits.shape[-1]} outputs"
            )
        loss = gate_bce_loss(logits, labels)
        self._log(stage, loss, logits.argmax(-1) == labels, len(labels))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")


class VerificationTask(_ClassifierTaskBase):
    """Trains the embedding ``f`` as a Siamese speaker verifier (001 Sec. 2.2)."""

    def __init__(self, embedding: SpeakerEmbedding, config: TrainConfig) -> None:
        super().__init__(embedding, config)
        self.verifier = SiameseVerifier(embedding)  # no parameters of its own

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self.verifier(batch["first"], batch["second"])  # [B] inner products
        same = batch["same"].to(logits.dtype)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, same)
        self._log(stage, loss, (logits > 0) == (same > 0.5), len(same))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")


class PairDataset(Dataset):
    """Pairs of *noisy* utterances, same speaker or not with equal chance (001 Sec. 3).

    The pairs of an epoch come from :func:`verification_pairs` seeded by ``(seed, epoch)``; each
    side is mixed like any training example (random segment, random noise, the recipe's SNRs), with
    the mixer's own code. With ``fixed=True`` every epoch sees the same pairs (validation).
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        noises: Sequence[NoiseRecording],
        options: MixingOptions,
        size: int,
        seed: int = 0,
        fixed: bool = False,
        prefix: str = "pair",
    ) -> None:
        if size < 2:
            raise ConfigError(f"a pair set needs at least 2 pairs (one same, one different), got {size}")
        self.utterances = list(utterances)
        self.noises = list(noises)
        self.options = options
        self.size = size
        self.seed = seed
        self.fixed = fixed
        self.prefix = prefix
        self.epoch = 0
        self._reader = Mixer(self.utterances, self.noises, options).reader  # one cache for all pairs
        self._pairs: tuple[int, list] | None = None

    def set_epoch(self, epoch: int) -> None:
        if not self.fixed:
            self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def pairs(self) -> list:
        if self._pairs is None or self._pairs[0] != self.epoch:
            rng = example_rng(self.seed, self.prefix, "pairs", self.epoch)
            speakers = [u.speaker for u in self.utterances]
            self._pairs = (self.epoch, verification_pairs(self.utterances, speakers, self.size, rng))
        return self._pairs[1]

    def _mix(self, utterance: Utterance, index: int, side: str) -> torch.Tensor:
        mixer = Mixer([utterance], self.noises, self.options, cache=False)
        mixer.reader = self._reader
        rng = example_rng(self.seed, self.prefix, self.epoch, index, side)
        spec = mixer.draw(rng, f"{self.prefix}-{self.epoch}-{index}-{side}")
        return torch.from_numpy(mixer.render(spec).noisy)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs()[index]
        return {
            "first": self._mix(pair.first, index, "a"),
            "second": self._mix(pair.second, index, "b"),
            "same": torch.tensor(float(pair.same)),
        }


# -- inference helpers ---------------------------------------------------------------------------


def load_gate(path: str | os.PathLike) -> UtteranceNet:
    """Rebuild a gate (or the embedding ``f``) from a leanse checkpoint folder, strictly."""
    folder = checkpoint_folder(path)
    document = read_checkpoint_config(folder)
    try:
        gate = build_gate(document["model"])
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder}: not a gate checkpoint ({err})") from None
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
        gate.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{folder / WEIGHTS}: corrupt or truncated weights ({err})") from None
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: weights do not match the gate config ({str(err).splitlines()[0]})") from None
    return gate.eval()


def predict_classes(gate: Gate, mixtures: Sequence[Mixture], batch_size: int = 16) -> list[int]:
    """``k* = argmax_k o_k`` (000 eq. 3) for each mixture; equal lengths share a batch."""
    predictions: dict[int, int] = {}
    by_length: dict[int, list[int]] = {}
    for index, mixture in enumerate(mixtures):
        by_length.setdefault(len(mixture.noisy), []).append(index)
    was_training = gate.training
    gate.eval()
    with torch.no_grad():
        for indices in by_length.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                noisy = torch.from_numpy(np.stack([mixtures[i].noisy for i in chunk]))
                for i, k in zip(chunk, gate(noisy).argmax(-1).tolist()):
                    predictions[i] = k
    gate.train(was_training)
    return [predictions[i] for i in range(len(mixtures))]


def embed_utterances(
    embedding: Callable[[torch.Tensor], torch.Tensor],
    utterances: Sequence[Utterance],
    options: MixingOptions,
) -> dict[str, torch.Tensor]:
    """``z <- f(s)`` for every (clean, whole) utterance, grouped by speaker (001 Sec. 2.3).

    001 clusters embeddings of the *clean* training utterances; each one is first scaled to the
    mixer's ``target_rms``, the level of the speech inside every training mixture, because ``f``
    reads linear magnitudes and has only seen speech at that level. Returns ``{speaker: [U, D]}``.
    """
    reader = AudioReader(options.sample_rate, cache=False)  # each file is read once
    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for utterance in utterances:
            wav = reader.whole(utterance.path)
            if wav.size == 0:
                raise LeanseError(f"{utterance.path}: empty utterance")
            wav = wav * (options.target_rms / (float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) + EPS))
            z = embedding(torch.from_numpy(wav.astype(np.float32))[None])  # [1, D]
            out.setdefault(utterance.speaker, []).append(z[0])
    return {speaker: torch.stack(vectors) for speaker, vectors in out.items()}


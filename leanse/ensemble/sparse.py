"""The sparsely active ensemble of specialists (paper 000 Sec. 2.3, paper 001 Sec. 2.1 / 2.6).

A gate classifies each noisy utterance into one of ``K`` partitions (SNR bin, gender, speaker
group); ``K`` specialist mask RNNs each denoise one partition. Three ways to combine them:

``"hard"`` (000 eq. 3, test time)
    ``Y = M^(k*)`` with ``k* = argmax_k p_k``. Utterances of a batch are *routed*: the batch is
    grouped by ``k*`` and each specialist runs only on its own utterances; a specialist that no
    utterance chose does not run at all. Run-time cost is the gate plus one specialist per
    utterance -- the point of both papers.
``"soft"`` (000 eq. 4-5, fine-tuning)
    ``Y = sum_k p_k M^(k)`` with ``p_k = exp(lambda o_k) / sum_j exp(lambda o_j)``, ``lambda =
    scale`` (10 in 000). 001 Sec. 2.6 describes the same thing as "the base of the softmax is e^10
    instead of e": ``(e^10)^o = e^(10 o)``. Every specialist runs; the result is differentiable
    with respect to the gate and all specialists.
``"oracle"``
    The specialist of the true partition, given as ``labels`` to :meth:`SparseEnsemble.forward`;
    the gate does not run. This is the "oracle choice of specialist" upper bound of 000 Sec. 4.

Implementation choice: masks are combined through the specialists' own waveform outputs. Each
specialist computes ``s_k = iSTFT(M^(k) * X)`` from the same noisy STFT ``X``; since the iSTFT is
linear and ``p`` is constant over an utterance, ``sum_k p_k s_k = iSTFT((sum_k p_k M^(k)) * X)``,
which is exactly eq. 4 (tested). Calling each specialist as a whole module keeps the hard output
bit-for-bit the chosen specialist's output and lets forward hooks (``leanse.complexity``) see which
specialists ran. The specialists and the gate must share ``sample_rate``, ``n_fft`` and
``hop_length``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from leanse.complexity import count_parameters
from leanse.ensemble.gates import Gate, build_gate
from leanse.ensemble.streaming import EnsembleStreamingMixin
from leanse.errors import ConfigError
from leanse.models.base import EnhancementModel, build_model, register_model, register_preset

MODES = ("hard", "soft", "oracle")


@register_model("sparse_ensemble")
class SparseEnsemble(EnsembleStreamingMixin, EnhancementModel):
    """A gate and ``K`` specialists; waveform ``[B, T]`` in, estimate ``[B, T]`` out.

    Args:
        gate: gate config or gate preset name (:func:`~leanse.ensemble.gates.build_gate`), e.g.
            ``"snr-gate-128x2"`` or ``{"preset": "speaker-gate-32x2-k5-8k"}``.
        specialist: one model config (or model preset name) used for all ``num_experts``
            specialists, e.g. ``"lstm-mask-512x2"``. Give this or ``specialists``.
        specialists: one model config per specialist (they may differ in size).
        num_experts: ``K``; defaults to the gate's ``num_classes`` and must equal it.
        mode: ``"hard"`` (000 eq. 3), ``"soft"`` (000 eq. 4-5) or ``"oracle"``; can be changed
            later through :attr:`mode`.
        scale: the softmax sharpness ``lambda`` of 000 eq. 5 (10 in the papers).

    The gate reads the *last* frame of each row of the ``[B, T]`` batch, so zero-padding a short
    utterance to the batch length changes what its gate sees: enhance variable-length utterances
    one at a time (``B = 1``) or in batches of equal length.

    Streaming (:mod:`leanse.ensemble.streaming`): the gate re-decides every block of frames and
    only the chosen specialist runs; a newly chosen specialist starts from its initial state.

    After each forward, :attr:`last_routing` holds the chosen specialist per utterance (``[B]``
    long; in soft mode the argmax of ``p``) and :attr:`last_probabilities` the ``[B, K]`` weights
    ``p`` (one-hot in oracle mode).
    """

    def __init__(
        self,
        gate: dict[str, Any] | str,
        specialist: dict[str, Any] | str | None = None,
        specialists: list[dict[str, Any] | str] | None = None,
        num_experts: int | None = None,
        mode: str = "hard",
        scale: float = 10.0,
    ) -> None:
        gate_module = build_gate(gate)
        if not isinstance(gate_module, Gate):
            raise ConfigError(
                f"gate {gate_module.registered_name!r} is not a classifier (it returns no K logits); "
                f"use an rnn_gate or speaker_gate config"
            )
        super().__init__(gate_module.sample_rate)
        self.gate = gate_module
        expert_configs = _expert_configs(specialist, specialists, num_experts, gate_module.num_classes)
        self.specialists = nn.ModuleList(build_model(config) for config in expert_configs)
        _check_compatible(self.gate, list(self.specialists))
        self.mode = mode
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale (lambda of 000 eq. 5) must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.last_routing: torch.Tensor | None = None
        self.last_probabilities: torch.Tensor | None = None

    # -- configuration ----------------------------------------------------------------------

    @property
    def num_experts(self) -> int:
        return len(self.specialists)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ConfigError(f"ensemble mode must be one of {', '.join(MODES)}, not {value!r}")
        self._mode = value

    @property
    def config(self) -> dict[str, Any]:
        """Resolved configs of the gate and the specialists (presets expanded), mode and scale.

        Identical specialists are stored once under ``specialist``; otherwise as a list.
        """
        configs = [expert.config for expert in self.specialists]
        identical = all(config == configs[0] for config in configs)
        return {
            "name": type(self).registered_name,
            "gate": self.gate.config,
            "specialist": configs[0] if identical else None,
            "specialists": None if identical else configs,
            "num_experts": self.num_experts,
            "mode": self.mode,
            "scale": self.scale,
        }

    @classmethod
    def from_parts(
        cls,
        gate: Gate,
        specialists: Sequence[EnhancementModel],
        mode: str = "hard",
        scale: float = 10.0,
    ) -> "SparseEnsemble":
        """The naive ensemble of 000 Sec. 2.3: independently pre-trained modules put together.

        The weights are copied, so fine-tuning the ensemble leaves the given modules unchanged
        (they stay available as the "specialist alone" baselines).
        """
        if not isinstance(gate, Gate):
            raise ConfigError(f"from_parts needs a gate (RNNGate, SpeakerGate), got {type(gate).__name__}")
        for expert in specialists:
            if not isinstance(expert, EnhancementModel):
                raise ConfigError(
                    f"specialists must be leanse enhancement models, got {type(expert).__name__}"
                )
        ensemble = cls(
            gate=gate.config,
            specialists=[expert.config for expert in specialists],
            num_experts=len(specialists),
            mode=mode,
            scale=scale,
        )
        ensemble.gate.load_state_dict(gate.state_dict())
        for target, source in zip(ensemble.specialists, specialists):
            target.load_state_dict(source.state_dict())
        return ensemble

    # -- inference ---------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T]`` noisy waveform -> ``[B, T]`` estimate, combined according to :attr:`mode`.

        ``labels`` (``[B]`` ints in ``range(K)``) are the true partitions; only oracle mode reads
        them, the other modes ignore them.
        """
        if wav.dim() != 2:
            raise ConfigError(f"SparseEnsemble expects a waveform batch [B, T], got {tuple(wav.shape)}")
        if self.mode == "oracle":
            routing = self._check_labels(labels, wav)
            probabilities = nn.functional.one_hot(routing, self.num_experts).to(wav.dtype)
            estimate = self._routed(wav, routing)
        else:
            logits = self.gate(wav)  # [B, K]
            probabilities = torch.softmax(self.scale * logits, dim=-1)  # 000 eq. 5, [B, K]
            if self.mode == "hard":
                routing = logits.argmax(dim=-1)  # 000 eq. 3, [B]
                estimate = self._routed(wav, routing)
            else:
                routing = probabilities.argmax(dim=-1)
                estimate = self._soft(wav, probabilities)
        self.last_routing = routing.detach()
        self.last_probabilities = probabilities.detach()
        return estimate

    def _routed(self, wav: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        """Run specialist ``routing[b]`` on utterance ``b``; each chosen specialist runs once."""
        if wav.shape[0] == 0:
            return wav.clone()
        pieces, positions = [], []
        for k in torch.unique(routing).tolist():  # only specialists that were chosen
            index = (routing == k).nonzero(as_tuple=True)[0]  # [B_k]
            pieces.append(self.specialists[k](wav.index_select(0, index)))  # [B_k, T]
            positions.append(index)
        grouped = torch.cat(pieces)  # [B, T], utterances grouped by specialist
        return grouped[torch.argsort(torch.cat(positions))]  # back to batch order

    def _soft(self, wav: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        """``iSTFT((sum_k p_k M^(k)) * X) = sum_k p_k s_k`` (000 eq. 4; see module docstring)."""
        outputs = torch.stack([expert(wav) for expert in self.specialists], dim=1)  # [B, K, T]
        return torch.einsum("bk,bkt->bt", probabilities.to(outputs.dtype), outputs)

    def _check_labels(self, labels: torch.Tensor | None, wav: torch.Tensor) -> torch.Tensor:
        if labels is None:
            raise ConfigError("oracle mode needs the true partition of each utterance: forward(wav, labels)")
        labels = torch.as_tensor(labels, device=wav.device)
        if labels.shape != wav.shape[:1] or labels.is_floating_point() or labels.is_complex():
            raise ConfigError(
                f"oracle labels must be {wav.shape[0]} integers (one per utterance), got "
                f"shape {tuple(labels.shape)} and dtype {labels.dtype}"
            )
        labels = labels.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_experts):
            raise ConfigError(
                f"oracle labels must lie in 0..{self.num_experts - 1}, got {labels.tolist()}"
            )
        return labels

    # -- cost ----------------------------------------------------------------------------------

    def parameter_counts(self) -> dict[str, Any]:
        """Counted (not measured) parameters: gate, each specialist, total, and ``effective`` = gate +
        the largest specialist (what one hard-gated utterance uses; 001 Sec. 4).

        ``leanse.complexity`` measures the effective count by running the model; this is the
        analytic figure the papers quote.
        """
        gate = count_parameters(self.gate)
        experts = [count_parameters(expert) for expert in self.specialists]
        return {
            "gate": gate,
            "specialists": experts,
            "specialists_total": sum(experts),
            "total": gate + sum(experts),
            "effective": gate + max(experts),
        }


def _expert_configs(
    specialist: dict[str, Any] | str | None,
    specialists: list[dict[str, Any] | str] | None,
    num_experts: int | None,
    gate_classes: int,
) -> list[dict[str, Any] | str]:
    """One config per specialist, checked against the gate's ``K``."""
    if (specialist is None) == (specialists is None):
        raise ConfigError("give exactly one of 'specialist' (one config for all) or 'specialists' (a list)")
    if specialists is not None:
        if not isinstance(specialists, (list, tuple)) or not specialists:
            raise ConfigError("'specialists' must be a non-empty list of model configs")
        if num_experts is not None and num_experts != len(specialists):
            raise ConfigError(
                f"num_experts={num_experts} but {len(specialists)} specialist configs were given"
            )
        configs = list(specialists)
    else:
        count = gate_classes if num_experts is None else num_experts
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"num_experts must be a positive integer, got {count!r}")
        configs = [specialist] * count
    if len(configs) != gate_classes:
        raise ConfigError(
            f"the gate chooses between K={gate_classes} specialists but the ensemble has "
            f"{len(configs)}: give {gate_classes} specialists or a gate with num_classes={len(configs)}"
        )
    return configs


def _check_compatible(gate: Gate, specialists: list[nn.Module]) -> None:
    """Same sample rate everywhere; STFT specialists must also share the gate's STFT."""
    for index, expert in enumerate(specialists):
        name = f"specialist {index} ({getattr(expert, 'registered_name', type(expert).__name__)})"
        if not isinstance(expert, EnhancementModel) or expert.num_sources != 1:
            raise ConfigError(f"{name} is not a single-output enhancement model")
        if expert.sample_rate != gate.sample_rate:
            raise ConfigError(
                f"{name} runs at {expert.sample_rate} Hz but the gate at {gate.sample_rate} Hz: "
                f"use one sample rate for the whole ensemble"
            )
        for key in ("n_fft", "hop_length"):
            value = getattr(expert, key, None)
            if value is not None and value != getattr(gate, key):
                raise ConfigError(
                    f"{name} has {key}={value} but the gate has {key}={getattr(gate, key)}: "
                    f"the gate and the specialists must share the STFT settings"
                )


def generalist_comparison(ensemble: SparseEnsemble, generalist: nn.Module) -> dict[str, float | int]:
    """Parameter savings of a sparse ensemble over a generalist (001 Sec. 4), as fractions.

    ``total_reduction``: all K specialists + gate vs the generalist (001: "48 %" for K=10 x h=64
    vs h=512; counted 48.7 %). ``effective_reduction``: gate + one specialist (001: "94 %";
    counted 93.3 %). ``effective_reduction_without_gate``: one specialist alone (95.0 %).
    """
    counts = ensemble.parameter_counts()
    reference = count_parameters(generalist)
    largest = max(counts["specialists"])
    return {
        "generalist": reference,
        "ensemble_total": counts["total"],
        "ensemble_effective": counts["effective"],
        "total_reduction": 1 - counts["total"] / reference,
        "effective_reduction": 1 - counts["effective"] / reference,
        "effective_reduction_without_gate": 1 - largest / reference,
    }


def _ensemble_presets() -> None:
    # 000: K=4 SNR specialists with the 128x2 gate, K=2 gender specialists with the 16x2 gate,
    # at the LSTM sizes of its Figure 2.
    for hidden, layers in [(64, 2), (128, 2), (256, 2), (512, 2), (1024, 2), (1024, 3)]:
        specialist = {"preset": f"lstm-mask-{hidden}x{layers}"}
        register_preset(
            f"snr-ensemble-lstm-{hidden}x{layers}",
            dict(name="sparse_ensemble", gate={"preset": "snr-gate-128x2"}, specialist=specialist),
        )
        register_preset(
            f"gender-ensemble-lstm-{hidden}x{layers}",
            dict(name="sparse_ensemble", gate={"preset": "gender-gate-16x2"}, specialist=specialist),
        )
    # 001: K = 2, 5, 10 speaker groups, GRU specialists of its Figure 3, speaker gate f + g.
    for k in (2, 5, 10):
        for hidden in [32, 64, 128, 256, 512, 1024]:
            register_preset(
                f"speaker-ensemble-k{k}-gru-{hidden}x2-8k",
                dict(name="sparse_ensemble", gate={"preset": f"speaker-gate-32x2-k{k}-8k"},
                     specialist={"preset": f"gru-mask-{hidden}x2-8k"}),
            )
    register_preset(
        "tiny-sparse-ensemble",
        dict(name="sparse_ensemble", gate={"preset": "tiny-snr-gate"},
             specialist={"preset": "tiny-mask-rnn"}),
    )


_ensemble_presets()

"""Online (streaming) sparse ensembles: the gate decides per block of frames, one specialist runs.

Offline, the gate of papers 000/001 reads the *whole* utterance and picks one specialist for it
(000 eq. 3). A stream has no end to wait for, so online:

* The gate's RNN runs on every STFT frame (its state is part of the stream state) and its logits
  at the current frame are what the offline gate would say if the utterance ended there.
* The choice is made on the first frame and then again every ``decision_frames`` frames (default
  16: 0.26 s at 16 kHz / hop 256, 0.51 s at 8 kHz); between decisions it is held.
* Cost per frame: the shared STFT front end, the gate and **one** specialist; the others do not
  run (their states are not touched).
* On a switch the newly chosen specialist starts from its **initial (zero) state**: its RNN did
  not see the frames it skipped, and a stale state from a past block would be older than no
  state. This costs a short transient after a switch (the RNN's warm-up); the shared front end
  (analysis and overlap-add buffers) is continuous, so no click is added at the switch itself.

While the choice does not change, the stream is exactly the chosen specialist's own stream (and
so its offline output; tested). The step routes in Python (the choice is data-dependent), so it
does not export as one ONNX graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from leanse.models.streaming import (
    FrameStreamingMixin,
    State,
    StateSpec,
    StreamingFraming,
    masked_update,
    rnn_state_specs,
    rnn_step,
)

DECISION_FRAMES = 16


def _gate_parts(gate: nn.Module) -> tuple[nn.RNNBase, nn.Module] | None:
    """(frame RNN, head on its output) of the gates of 000 and 001, or None."""
    if hasattr(gate, "rnn") and hasattr(gate, "dense"):  # RNNGate: RNN -> Linear(H, K)
        return gate.rnn, gate.dense
    embedding, classifier = getattr(gate, "embedding", None), getattr(gate, "classifier", None)
    if embedding is not None and classifier is not None and hasattr(embedding, "rnn"):
        return embedding.rnn, classifier  # SpeakerGate: g(f(x)), f = GRU, last frame
    return None


class EnsembleStreamingMixin(FrameStreamingMixin):
    """Streaming for :class:`~leanse.ensemble.sparse.SparseEnsemble` (see module docstring)."""

    decision_frames: int = DECISION_FRAMES
    #: the step branches in Python on the gate's choice: one ONNX graph would freeze one branch
    step_exports_to_onnx = False

    def not_streamable_reason(self) -> str | None:
        if self.mode != "hard":
            return f"only a hard-gated ensemble streams (mode is {self.mode!r}); set mode: hard"
        if _gate_parts(self.gate) is None:
            return f"the gate {type(self.gate).__name__} has no frame-by-frame form"
        geometry = None
        for expert in self.specialists:
            reason = expert.not_streamable_reason()
            if reason is not None or not isinstance(expert, FrameStreamingMixin):
                return f"a specialist does not stream ({reason})"
            framing = expert.stream_framing
            shape = (framing.n_fft, framing.hop, framing.pad, framing.reflect)
            if geometry not in (None, shape):
                return "the specialists' STFTs differ; streaming shares one front end"
            geometry = shape
        return None

    @property
    def flush_mode(self) -> str:  # type: ignore[override]
        return self.specialists[0].flush_mode

    def build_stream_framing(self) -> StreamingFraming:
        return self.specialists[0].build_stream_framing()

    def streamer(self, batch: int = 1, decision_frames: int | None = None) -> Any:
        """A streamer re-deciding every ``decision_frames`` frames (one stream: batch 1)."""
        if decision_frames is not None:
            if decision_frames < 1:
                raise ValueError("decision_frames must be at least 1")
            self.decision_frames = int(decision_frames)
        return super().streamer(batch)

    def core_state_specs(self, batch: int) -> list[StateSpec]:
        if batch != 1:
            from leanse.models.streaming import StateError

            raise StateError("a streaming ensemble routes one stream at a time: use batch 1")
        rnn, _ = _gate_parts(self.gate)
        specs = rnn_state_specs("gate", rnn, batch)
        specs += [StateSpec("choice", (1,), torch.int64), StateSpec("frames_in_block", (1,), torch.int64)]
        for k, expert in enumerate(self.specialists):
            specs += [StateSpec(f"specialist{k}_{s.name}", s.shape, s.dtype)
                      for s in expert.core_state_specs(batch)]
        return specs

    def _step(self, x_hop: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        framing = self.stream_framing
        rnn, head = _gate_parts(self.gate)
        gate_size = len(rnn_state_specs("gate", rnn, 1))
        front, rest = state[:4], state[4:]
        gate_state, choice, count = rest[:gate_size], rest[gate_size], rest[gate_size + 1]
        sizes = [len(e.core_state_specs(1)) for e in self.specialists]
        expert_states, position = [], gate_size + 2
        for size in sizes:
            expert_states.append(rest[position : position + size])
            position += size

        features, index, front = framing.analyse(x_hop, front)
        valid = index >= 0
        re, im = features
        hidden, new_gate = rnn_step(rnn, torch.sqrt(re * re + im * im), gate_state)
        gate_state = masked_update(valid, new_gate, gate_state)
        new_choice = choice
        if bool(valid) and int(count) == 0:  # a decision frame: 000 eq. 3 on the gate so far
            new_choice = head(hidden).argmax(-1).reshape(1).to(choice.dtype)
        k = int(new_choice)
        current = expert_states[k]
        if k != int(choice):  # switch: the new specialist starts from its initial state
            current = tuple(torch.zeros_like(t) for t in current)
        out, new_expert = self.specialists[k].core_step(features, current)
        expert_states[k] = masked_update(valid, new_expert, current)
        count = torch.where(valid, (count + 1) % self.decision_frames, count)
        y_hop, front = framing.synthesise(out, index, front)
        flat = [t for states in expert_states for t in states]
        return y_hop, (*front, *gate_state, new_choice, count, *flat)

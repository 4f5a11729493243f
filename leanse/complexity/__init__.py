"""The one way to count cost: parameters, MACs, effective (run-time) cost, bytes on disk, RTF.

Every report and table takes its numbers from here (DESIGN.md, "Counting cost, one way").

Parameters
    ``sum(p.numel() for p in model.parameters())`` (shared tensors once, as ``parameters()`` does).

MACs -- two conventions (``/work/shared/FIDELITY.md``, "Counting conventions")
    Both count one forward pass at batch 1 in eval mode under ``torch.no_grad()`` on
    ``seconds * sample_rate`` samples of seeded random noise. Both count with forward hooks on a
    real forward pass, so they give the MACs that actually run: a hard-gated ensemble counts its
    gate and the one chosen specialist, BLOOM-Net with ``blocks=l`` its first ``l`` blocks.

    ``paper``
        thop's conventions, because thop is the tool paper 002 names and the published numbers are
        thop numbers. It is ``thop.profile`` (0.1.1.post2209072238) with its own rules:

        * Linear: ``in_features`` per output element; Conv: ``C_in/groups * prod(kernel)`` per
          output element; biases are not counted.
        * a transposed convolution is counted at every *output* position like a convolution, which
          overcounts it by the stride (FIDELITY: this is what the 002/004 numbers mean);
        * LSTM ``4H(I+H) + 16H``, GRU ``3H(I+H) + 13H``, tanh RNN ``H(I+H) + 3H`` per time step,
          layer and direction (``8H`` / ``7H`` / ``H`` without biases) -- the 16H/13H terms are
          thop's bias additions and gate products; 004's 12.13G for ``lstm-4x1024`` needs them;
        * BatchNorm / LayerNorm / InstanceNorm ``2 * numel`` (``4 *`` with affine), PReLU ``numel``
          in eval mode, Softmax ``3n - 1`` per vector, ReLU / LeakyReLU / pooling-by-max 0;
        * everything else is 0: GroupNorm, a hand-written gLN, Sigmoid, Tanh, ELU, and every
          *functional* op (``torch.stft``, ``x * mask``, ``torch.matmul``...).

        ``custom_ops`` change none of these numbers; they fix thop where it would misread a model:
        thop looks rules up by *exact* type, so a subclass of ``nn.Conv1d`` or ``nn.LSTM`` would
        silently count 0 -- subclasses get their base class's rule; thop reads the batch size of
        an unbatched (2-D) RNN input from the feature axis -- our RNN rule reads it right, with
        thop's formula; GroupNorm is pinned to 0 explicitly, should a later thop start counting
        it. Activations are left as thop counts them (PReLU ``numel``): zeroing PReLU breaks the
        BLOOM-Net row of FIDELITY (its l=2,4,5,6 MACs only come out with PReLU counted).

    ``exact``
        Our own hook counter of every multiply the model runs, as multiply-accumulates:

        * Linear and Conv as above; a transposed convolution per *input* element:
          ``C_out/groups * prod(kernel)`` each (what it really computes);
        * RNNs with the same per-step formulas as ``paper`` (their elementwise terms are < 1 % of
          the matrix products at the sizes used here), over the steps actually run (a
          PackedSequence counts ``sum(batch_sizes)``, not thop's ``max batch * steps``);
          ``proj_size`` LSTMs from their real weight shapes;
        * normalisation: BatchNorm in eval folds into one scale-and-shift, 1 MAC per element;
          norms with run-time statistics (GroupNorm, LayerNorm, InstanceNorm, RMSNorm, BatchNorm in
          training) 2 MACs per element (the sum of squares for the variance, and the normalising
          scale-and-shift with the affine folded into it);
        * activations 0 (Sigmoid, Tanh, ReLU, PReLU, ELU, Softmax...: no multiply-accumulate of
          data by weights; their cost is transcendental functions, which MACs do not describe);
        * MultiheadAttention: the four projections and the two attention products;
        * functional ops outside a counted module, seen through a ``TorchFunctionMode``:
          ``linear``, ``matmul`` / ``mm`` / ``bmm`` / ``addmm`` / ``baddbmm``, two-operand
          ``einsum``, ``conv*`` / ``conv_transpose*``, ``scaled_dot_product_attention``,
          ``layer_norm`` / ``group_norm`` / ``batch_norm`` / ``instance_norm``, elementwise
          multiplications and divisions (``*``, ``/``, ``mul``, ``div``, ``addcmul``,
          ``addcdiv``; 1 per output element, 2 for complex x real, 4 for complex x complex), and
          the FFTs: a real FFT of ``N`` points is counted as ``N log2 N`` real multiplies (a
          radix-2 real FFT via an ``N/2``-point complex FFT: ``(N/4) log2(N/2)`` complex products
          of 4 real multiplies, plus ``N/4`` for the split), a complex FFT ``2 N log2 N``;
          ``torch.stft`` adds ``N`` window multiplies per frame; ``torch.istft`` adds ``N`` per
          frame for the synthesis window and 1 per output sample for the window-envelope
          division; overlap-add is additions only.

        Still *not* counted in ``exact`` (be honest in reports): additions and subtractions
        (residual adds, overlap-add, biases), reductions (``mean``, ``sum``), powers, square
        roots, complex magnitudes (``abs``), exponentials and the rest of the activations,
        padding / reshaping / indexing, and composite functional ops without a rule (for example
        ``F.multi_head_attention_forward`` called directly). Ops inside a counted module are never
        counted twice: the module's rule covers them. A module type can opt in with a method
        ``exact_macs(args, kwargs, output) -> int`` (or :func:`register_exact_rule`); modules that
        run, own parameters and have no rule are listed in ``no_rule_modules`` of a profile (in
        ``exact`` their recognised functional ops are still counted; in ``paper`` they count 0).

Effective (run-time) parameters
    The parameters owned directly by the modules whose forward ran during the counting pass, plus
    any parameter handed to a torch function during it (``MultiheadAttention`` uses its
    ``out_proj`` weights without calling ``out_proj``), each tensor once: the gate plus the chosen
    specialist of a hard-gated ensemble. A module that runs counts all its own parameters even if
    it used only some (raw expert weights held directly by one module would all count): keep
    experts as sub-modules, as leanse's ensembles do. ``effective_macs`` equals ``macs`` (both
    are run-time counts); the key exists so tables name what they show.

Bytes
    Size of the model's weights serialised with safetensors (the ``state_dict``, shared tensors
    once, no metadata); a packed compressed model's ``packed_bytes()`` method wins if present.
"""

from leanse.complexity.counting import (
    CONVENTIONS,
    NOISE_SEED,
    Cost,
    count_macs,
    count_parameters,
    model_bytes,
    trace_cost,
)
from leanse.complexity.exact import register_exact_rule
from leanse.complexity.profile import profile_model, reduction
from leanse.complexity.runtime import measure_rtf

__all__ = [
    "CONVENTIONS",
    "NOISE_SEED",
    "Cost",
    "count_parameters",
    "count_macs",
    "trace_cost",
    "model_bytes",
    "measure_rtf",
    "profile_model",
    "reduction",
    "register_exact_rule",
]

"""k-means weight sharing with a packed representation (004 Sec. II-D; Han et al., Deep
Compression, ICLR 2016 = 004's [11]).

Per tensor, the *nonzero* weights are clustered into ``K = 2**bits`` clusters by k-means (004
Eq. (10)) with **linear initialisation** -- ``K`` centroids evenly spaced over
``[w_min, w_max]`` of the nonzero weights, as 004 follows [11] -- and every nonzero weight is
replaced by its centroid. Zeros (pruned weights) stay zero and are not clustered.

Packed form of a tensor (what :meth:`QuantizedTensor.nbytes` counts):

* a float32 codebook of ``K`` centroids (``32 K`` bits, as in 004 Eq. (11));
* one ``bits``-bit index per nonzero weight, bit-packed (``ceil(N * bits / 8)`` bytes);
* if the tensor has zeros: the positions of the nonzeros as a Rice-coded gap list in 004's group
  order, or a live-group bitmap for structured sparsity (:mod:`leanse.compress.positions`).
  004 Eq. (11) counts no position information at all; :func:`eq11_bytes` gives its convention
  and ``nbytes`` what a file really needs.

Model size (:func:`quantize_model` installs ``model.packed_bytes()``, which
``leanse.complexity.model_bytes`` uses): the packed quantized tensors plus every other
``state_dict`` tensor at its own dtype (biases, norms, buffers), no container header. MB are
``bytes / 2**20``. Scope choices: ``bits`` is limited to 0..8 (K <= 256; ``bits = 0`` is
Algorithm 3's ``K = 1``), and only the prunable tensors of
:func:`leanse.compress.regularizers.prunable_tensors` are quantized.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from leanse.compress.positions import PositionCode, decode_positions, encode_positions
from leanse.compress.regularizers import prunable_tensors

__all__ = ["QuantizedTensor", "PackedModel", "kmeans_codebook", "quantize_tensor",
           "quantize_model", "size_mb", "eq11_bytes", "layout_of", "MAX_BITS"]

#: Largest bit-width of a cluster index (K <= 256).
MAX_BITS = 8


def size_mb(num_bytes: int) -> float:
    """MB as 004 and FIDELITY count them: ``bytes / 2**20``."""
    return num_bytes / 2**20


def kmeans_codebook(values: np.ndarray, bits: int, max_iter: int = 100,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means of ``values`` into ``2**bits`` clusters with linear init (004 Eq. (10)).

    Returns ``(codebook float32 [K], labels int64 [n])``. With at most ``K`` distinct values the
    distinct values are the codebook (exact; k-means would only duplicate centroids).
    """
    check_bits(bits)
    k = 2**bits
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    distinct = np.unique(values)
    if distinct.size <= k:
        return distinct.astype(np.float32), np.searchsorted(distinct, values).astype(np.int64)
    from sklearn.cluster import KMeans

    init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty clusters from the linear init are fine
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=max_iter, random_state=seed)
        labels = km.fit_predict(values.reshape(-1, 1))
    return km.cluster_centers_.reshape(-1).astype(np.float32), labels.astype(np.int64)


def check_bits(bits: int) -> int:
    from leanse.errors import ConfigError

    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 0 <= bits <= MAX_BITS:
        raise ConfigError(f"bits must be an integer in 0..{MAX_BITS} (K = 2**bits clusters), not {bits!r}")
    return int(bits)


def layout_of(shape: tuple[int, ...], kind: str) -> str:
    """How a tensor splits into 004's groups for position coding: ``"kernels"`` (convolutions,
    ``[C_out, C_in, k...]``: one group per kernel), ``"columns"`` (2-D FC / RNN matrices), or
    ``"flat"`` (one group)."""
    if kind in ("conv", "conv_transpose") and len(shape) > 2:
        return "kernels"
    if len(shape) == 2:
        return "columns"
    return "flat"


def _to_groups(flat: np.ndarray, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """Dense values -> ``[num_groups, group_size]`` in 004's group order."""
    if layout == "columns":
        return flat.reshape(shape).T
    if layout == "kernels":
        return flat.reshape(shape[0] * shape[1], -1)
    return flat.reshape(1, -1)


def _from_groups(grouped: np.ndarray, shape: tuple[int, ...], layout: str) -> np.ndarray:
    if layout == "columns":
        return np.ascontiguousarray(grouped.T).reshape(shape)
    return grouped.reshape(shape)


def _pack_bits(indices: np.ndarray, bits: int) -> np.ndarray:
    if bits == 0 or indices.size == 0:
        return np.zeros(0, np.uint8)
    planes = np.unpackbits(indices.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - bits:]
    return np.packbits(planes.reshape(-1))


def _unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    if bits == 0:
        return np.zeros(count, np.int64)
    planes = np.unpackbits(packed)[: count * bits].reshape(count, bits)
    planes = np.concatenate([np.zeros((count, 8 - bits), np.uint8), planes], axis=1)
    return np.packbits(planes, axis=1).reshape(-1).astype(np.int64)


@dataclass
class QuantizedTensor:
    """Packed k-means-quantized tensor: codebook, bit-packed indices, sparse positions.

    Indices are listed in 004's group order (``layout``), the order of the position code.
    """

    shape: tuple[int, ...]
    bits: int
    codebook: np.ndarray  # float32 [K]
    indices: np.ndarray  # uint8, bit-packed, one index per nonzero
    positions: PositionCode  # where the nonzeros are (mode "dense" if everywhere)
    count: int  # number of nonzero (clustered) weights
    layout: str = "flat"

    def nbytes(self) -> int:
        return int(self.codebook.nbytes + self.indices.nbytes + self.positions.nbytes())

    def eq11_bits(self) -> int:
        """004 Eq. (11)'s denominator: ``N log2 K + 32 K``."""
        return self.count * self.bits + 32 * int(self.codebook.size)

    def unpack(self) -> torch.Tensor:
        """The dense float32 tensor the packed form stands for (``ValueError`` if the streams are
        inconsistent)."""
        occupied = decode_positions(self.positions)  # [G, S] in group order
        labels = _unpack_bits(self.indices, self.bits, self.count)
        if self.count and (labels.size != self.count or labels.max() >= max(self.codebook.size, 1)):
            raise ValueError("cluster index beyond the codebook")
        grouped = np.zeros(occupied.shape, np.float32)
        if self.count:
            grouped[occupied] = self.codebook[labels]
        return torch.from_numpy(_from_groups(grouped, self.shape, self.layout))


def quantize_tensor(weight: torch.Tensor, bits: int, max_iter: int = 100,
                    kind: str = "linear") -> QuantizedTensor:
    """Cluster the nonzero entries of ``weight`` (004 Sec. II-D) and pack them; ``kind`` is the
    :class:`~leanse.compress.regularizers.PrunableTensor` kind (it sets the group order)."""
    shape = tuple(weight.shape)
    layout = layout_of(shape, kind)
    flat = weight.detach().to("cpu", torch.float32).reshape(-1).numpy()
    grouped = _to_groups(flat, shape, layout)  # [G, S]
    occupied = grouped != 0
    codebook, labels = kmeans_codebook(grouped[occupied], bits, max_iter)
    return QuantizedTensor(
        shape=shape, bits=bits, codebook=codebook, indices=_pack_bits(labels, bits),
        positions=encode_positions(occupied), count=int(occupied.sum()), layout=layout,
    )


class PackedModel:
    """The packed quantized tensors of a model; ``packed_bytes()`` is its size on disk."""

    def __init__(self, model: nn.Module, tensors: dict[str, QuantizedTensor]) -> None:
        self._model = weakref.ref(model)
        self.tensors = tensors

    def packed_bytes(self) -> int:
        model = self._model()
        total = sum(q.nbytes() for q in self.tensors.values())
        if model is None:
            return total
        seen: set[tuple[int, int]] = set()
        for name, tensor in model.state_dict().items():
            if name in self.tensors:
                continue
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            if tensor.numel() and key in seen:
                continue
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
        return int(total)

    def eq11_bytes(self) -> int:
        """The model's size by 004 Eq. (11): see :func:`eq11_bytes`."""
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this PackedModel is gone")
        return eq11_bytes(model, self.tensors)

    def report(self) -> dict[str, dict]:
        """Per tensor: bits, clusters, nonzeros, position code and packed bytes."""
        return {name: {"bits": q.bits, "clusters": int(q.codebook.size), "nonzeros": q.count,
                       "numel": math.prod(q.shape), "positions": q.positions.mode,
                       "position_bytes": q.positions.nbytes(), "bytes": q.nbytes(),
                       "eq11_bytes": q.eq11_bits() / 8}
                for name, q in self.tensors.items()}


def eq11_bytes(model: nn.Module, tensors: dict[str, QuantizedTensor]) -> int:
    """Model size in 004's convention: every quantized tensor at ``(N log2 K + 32 K) / 8`` bytes
    (Eq. (11), no position information), every other parameter and buffer at its own dtype."""
    bits = sum(q.eq11_bits() for q in tensors.values())
    other = sum(t.numel() * t.element_size() for name, t in model.state_dict().items()
                if name not in tensors)
    return int(math.ceil(bits / 8) + other)


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int | dict[str, int], max_iter: int = 100,
                   install: bool = True) -> PackedModel:
    """Replace each prunable tensor's nonzero weights by their k-means centroids, in place.

    ``bits`` is one bitwidth or per-tensor bitwidths (e.g. from
    :func:`leanse.compress.sensitivity.quantization_sensitivity`; tensors missing from the
    dict stay float32). With ``install`` the model gets a ``packed_bytes`` method, so
    ``leanse.complexity.model_bytes(model)`` reports the compressed size. Training the model
    further breaks the weight sharing (Deep Compression's centroid fine-tuning is not done here).
    """
    packed: dict[str, QuantizedTensor] = {}
    for spec in prunable_tensors(model):
        b = bits.get(spec.name) if isinstance(bits, dict) else bits
        if b is None:
            continue
        q = quantize_tensor(spec.weight, check_bits(b), max_iter, spec.kind)
        spec.weight.copy_(q.unpack().to(spec.weight.device, spec.weight.dtype))
        packed[spec.name] = q
    result = PackedModel(model, packed)
    if install:
        model.packed_bytes = result.packed_bytes  # type: ignore[assignment]
    return result

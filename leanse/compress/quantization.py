"""k-means weight sharing with a packed representation (004 Sec. II-D; Han et al., Deep
Compression, ICLR 2016 = 004's [11]).

Per tensor, the *nonzero* weights are clustered into ``K = 2**bits`` clusters by k-means (004
Eq. (10)) with **linear initialisation** -- ``K`` centroids evenly spaced over
``[w_min, w_max]`` of the nonzero weights, as 004 follows [11] -- and every nonzero weight is
replaced by its centroid. Zeros (pruned weights) stay zero and are not clustered.

Packed form of a tensor (what :meth:`QuantizedTensor.nbytes` counts):

* a float32 codebook of ``K`` centroids (``32 K`` bits, as in 004 Eq. (11));
* one ``bits``-bit index per nonzero weight, bit-packed (``ceil(N * bits / 8)`` bytes);
* if the tensor has zeros: a 1-bit occupancy bitmap over all ``numel`` positions. This is our
  choice of sparse index coding (simple, exact); Deep Compression's relative 4-bit gaps are
  smaller at high sparsity. 004 Eq. (11) counts no position information at all.

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

from leanse.compress.regularizers import prunable_tensors

__all__ = ["QuantizedTensor", "PackedModel", "kmeans_codebook", "quantize_tensor",
           "quantize_model", "size_mb"]


def size_mb(num_bytes: int) -> float:
    """MB as 004 and FIDELITY count them: ``bytes / 2**20``."""
    return num_bytes / 2**20


def kmeans_codebook(values: np.ndarray, bits: int, max_iter: int = 100,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means of ``values`` into ``2**bits`` clusters with linear init (004 Eq. (10)).

    Returns ``(codebook float32 [K], labels int64 [n])``. With at most ``K`` distinct values the
    distinct values are the codebook (exact; k-means would only duplicate centroids).
    """
    if not 0 <= bits <= 8:
        raise ValueError(f"bits must be in 0..8, not {bits}")
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
    """Packed k-means-quantized tensor: codebook, bit-packed indices, optional bitmap."""

    shape: tuple[int, ...]
    bits: int
    codebook: np.ndarray  # float32 [K]
    indices: np.ndarray  # uint8, bit-packed, one index per nonzero
    bitmap: np.ndarray | None  # uint8, packbits of (weight != 0), None if dense
    count: int  # number of nonzero (clustered) weights

    def nbytes(self) -> int:
        bitmap = 0 if self.bitmap is None else self.bitmap.nbytes
        return int(self.codebook.nbytes + self.indices.nbytes + bitmap)

    def unpack(self) -> torch.Tensor:
        """The dense float32 tensor the packed form stands for."""
        numel = math.prod(self.shape)
        labels = _unpack_bits(self.indices, self.bits, self.count)
        values = self.codebook[labels] if self.count else np.zeros(0, np.float32)
        dense = np.zeros(numel, np.float32)
        if self.bitmap is None:
            dense[:] = values
        else:
            where = np.unpackbits(self.bitmap)[:numel].astype(bool)
            dense[where] = values
        return torch.from_numpy(dense.reshape(self.shape))


def quantize_tensor(weight: torch.Tensor, bits: int, max_iter: int = 100) -> QuantizedTensor:
    """Cluster the nonzero entries of ``weight`` (004 Sec. II-D) and pack them."""
    flat = weight.detach().to("cpu", torch.float32).reshape(-1).numpy()
    nonzero = flat != 0
    codebook, labels = kmeans_codebook(flat[nonzero], bits, max_iter)
    dense = bool(nonzero.all())
    return QuantizedTensor(
        shape=tuple(weight.shape), bits=bits, codebook=codebook,
        indices=_pack_bits(labels, bits),
        bitmap=None if dense else np.packbits(nonzero.astype(np.uint8)),
        count=int(nonzero.sum()),
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

    def report(self) -> dict[str, dict]:
        """Per tensor: bits, clusters, nonzeros and packed bytes."""
        return {name: {"bits": q.bits, "clusters": int(q.codebook.size), "nonzeros": q.count,
                       "bytes": q.nbytes()} for name, q in self.tensors.items()}


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
        q = quantize_tensor(spec.weight, int(b), max_iter)
        spec.weight.copy_(q.unpack().to(spec.weight.device, spec.weight.dtype))
        packed[spec.name] = q
    result = PackedModel(model, packed)
    if install:
        model.packed_bytes = result.packed_bytes  # type: ignore[assignment]
    return result

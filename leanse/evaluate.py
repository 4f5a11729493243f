"""Score a model on a list of mixtures: per-file metrics, means overall and by label, tables.

Conventions are those of :mod:`leanse.metrics` (DESIGN.md, "Scoring, one way"): zero-mean SI-SDR
(Le Roux et al. 2019), SI-SDRi against the noisy input of the same file, PESQ wideband at 16 kHz
and narrowband at 8 kHz (other rates resampled to 16 kHz), STOI/ESTOI from pystoi. Failed PESQ or
STOI scores are ``None``: they are counted and left out of the means, never averaged as zeros.

Work split on a small CPU machine: the model runs in this process (``torch.no_grad``, eval mode)
while ``workers`` processes score the files it already enhanced -- PESQ and STOI are the slow part.
The workers start with ``forkserver`` (``spawn`` where unavailable), never ``fork``: a forked copy
of a process whose torch thread pool is running can deadlock. The workers import only numpy,
pesq and pystoi (this module imports torch lazily), and while they run this process's torch uses
``cpu_count - workers`` threads (at least one), so the cores are shared rather than oversubscribed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from leanse.errors import AudioError, LeanseError
from leanse.metrics import DNSMOS_KEYS, METRICS, SI_SDR_CONVENTION, pesq_mode, score_pair

if TYPE_CHECKING:  # torch is imported lazily: scoring workers unpickle functions from here
    import torch

    from leanse.data.records import Mixture

#: Column titles of :meth:`EvaluationResult.table`.
TITLES = {
    "si_sdr": "SI-SDR (dB)",
    "si_sdri": "SI-SDRi (dB)",
    "pesq": "PESQ",
    "stoi": "STOI",
    "estoi": "ESTOI",
    "si_sdr_noisy": "SI-SDR noisy",
    "pesq_noisy": "PESQ noisy",
    "stoi_noisy": "STOI noisy",
    "estoi_noisy": "ESTOI noisy",
}
_SCALAR = (str, int, float, bool, np.integer, np.floating, np.bool_)


@dataclass
class EvaluationResult:
    """Per-file rows and their summaries.

    ``rows``: one dict per file: ``id``, every scalar ``meta`` label (``snr``, ``speaker``, ...;
    non-scalar labels such as arrays are left out), then the metrics of
    :data:`leanse.metrics.METRICS` (``None`` = that metric failed on that file).
    """

    rows: list[dict[str, Any]]
    sample_rate: int
    group_by: tuple[str, ...] = ("snr",)
    info: dict[str, Any] = field(default_factory=dict)  # model name, forward kwargs, source

    @property
    def count(self) -> int:
        """Number of files scored."""
        return len(self.rows)

    @property
    def pesq_failures(self) -> int:
        """Files whose enhanced output PESQ could not score (left out of the PESQ mean)."""
        return sum(row["pesq"] is None for row in self.rows)

    @property
    def means(self) -> dict[str, float | None]:
        """Mean of every metric over all files (failures excluded; ``None`` if all failed)."""
        return _means(self.rows)

    def groups(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{label: {value: summary}}`` for each ``group_by`` label some row carries.

        Rows without the label fall in the group ``"n/a"``. A summary is ``{"n", "pesq_failures",
        "pesq_noisy_failures", **means}``.
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for key in self.group_by:
            if not any(key in row for row in self.rows):
                continue
            buckets: dict[Any, list[dict[str, Any]]] = {}
            for row in self.rows:
                buckets.setdefault(row.get(key), []).append(row)
            out[key] = {_label(value): _summary(buckets[value]) for value in _sorted(buckets)}
        return out

    def summary(self) -> dict[str, Any]:
        """Everything ``summary.json`` holds (JSON-serialisable)."""
        mode, rate = pesq_mode(self.sample_rate)
        return {
            "n_files": self.count,
            "sample_rate": self.sample_rate,
            "conventions": {
                "si_sdr": SI_SDR_CONVENTION,
                "pesq": _pesq_description(self.sample_rate),
                "pesq_mode": mode,
                "pesq_rate": rate,
                "stoi": "pystoi (STOI: Taal et al. 2011; ESTOI: Jensen & Taal 2016)",
                "failures": "PESQ/STOI failures are counted and left out of the means",
            },
            "overall": _summary(self.rows),
            "groups": self.groups(),
            "missing_group_by": [k for k in self.group_by if not any(k in r for r in self.rows)],
            **self.info,
        }

    def table(self) -> str:
        """A markdown table: one line for all files, then one per value of each ``group_by`` label.

        Its caption says how many files it averages, the SI-SDR convention and the PESQ mode.
        """
        header = ["files", "n", *(TITLES[m] for m in METRICS), "PESQ fails"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

        def line(name: str, summary: dict[str, Any]) -> str:
            cells = [name, str(summary["n"]), *(_fmt(m, summary[m]) for m in METRICS),
                     str(summary["pesq_failures"])]
            return "| " + " | ".join(cells) + " |"

        lines.append(line("all", _summary(self.rows)))
        for key, groups in self.groups().items():
            lines += [line(f"{key}={value}", summary) for value, summary in groups.items()]
        failures = self.pesq_failures
        caption = (
            f"Means over {self.count} files ({_pesq_description(self.sample_rate)}; "
            f"{failures} PESQ failure{'s' if failures != 1 else ''} left out of its mean, not counted "
            f"as 0); {SI_SDR_CONVENTION}; \"noisy\" columns score the unprocessed input."
        )
        return "\n".join(lines) + "\n\n" + caption

    def write(self, out_dir: str | os.PathLike) -> None:
        """Write ``per_file.csv`` and ``summary.json`` into ``out_dir``, each atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        columns: list[str] = []
        for row in self.rows:  # union of columns, in first-seen order
            columns += [key for key in row if key not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        _write_atomic(out_dir / "per_file.csv", buffer.getvalue())
        _write_atomic(out_dir / "summary.json", json.dumps(self.summary(), indent=2) + "\n")


def evaluate_model(
    model: "torch.nn.Module",
    mixtures: Iterable["Mixture"],
    out_dir: Path | None = None,
    workers: int = 2,
    batch_size: int = 1,
    group_by: tuple[str, ...] = ("snr",),
    source: int | None = None,
    dnsmos: bool = False,
    **forward_kwargs: Any,
) -> EvaluationResult:
    """Enhance every mixture's ``noisy`` with ``model`` and score it against its ``clean``.

    Args:
        model: an :class:`~leanse.models.EnhancementModel`; every mixture must be at its
            ``sample_rate`` (else :class:`AudioError`).
        mixtures: any iterable (a generator is consumed lazily: memory holds a few files).
        out_dir: if given, receives ``per_file.csv`` and ``summary.json``.
        workers: scoring processes (0: score in this process, sequentially).
        batch_size: mixtures per forward pass. Only mixtures of equal length share a pass (no
            padding, so the outputs are exactly those of ``batch_size=1``).
        group_by: ``meta`` labels to break the means down by.
        source: for a separation model (``num_sources > 1``), the output scored against
            ``clean``; required for such models.
        dnsmos: also score DNSMOS SIG / BAK / OVRL (optional extra ``leanse[dnsmos]``).
        forward_kwargs: passed to ``model(noisy, **forward_kwargs)`` (e.g. ``blocks=3``).
    """
    import torch  # imported here, not at the top: the scoring workers never need it

    from leanse.models.base import check_source, run_enhancement

    if batch_size < 1 or workers < 0:
        raise LeanseError(f"need batch_size >= 1 and workers >= 0, got {batch_size} and {workers}")
    check_source(model, source)  # a separation model without --source fails before any work
    rate = int(model.sample_rate)
    rows: list[dict[str, Any]] = []
    pending: deque[tuple[dict[str, Any], Future | dict]] = deque()
    max_pending = 4 * max(workers, 1) + batch_size  # bounds the arrays waiting to be scored

    def drain(keep: int) -> None:
        while len(pending) > keep:
            base, scores = pending.popleft()
            rows.append({**base, **(scores.result() if isinstance(scores, Future) else scores)})

    def run(batch: list[Mixture]) -> None:
        by_length: dict[int, list[Mixture]] = {}
        for mixture in batch:
            by_length.setdefault(len(mixture.noisy), []).append(mixture)
        for group in by_length.values():
            noisy = torch.from_numpy(np.stack([m.noisy for m in group]).astype(np.float32))  # [B, T]
            estimates = run_enhancement(model, noisy.to(device), source, **forward_kwargs).float().cpu().numpy()
            for mixture, estimate in zip(group, estimates):
                args = (estimate, mixture.clean, mixture.noisy, rate)
                scores = pool.submit(score_pair, *args, dnsmos=dnsmos) if pool else score_pair(*args, dnsmos=dnsmos)
                pending.append((_row_base(mixture), scores))
                drain(max_pending)

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training, threads = model.training, torch.get_num_threads()
    pool = _scoring_pool(workers) if workers else None
    try:
        model.eval()
        if workers:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
        batch: list[Mixture] = []
        for mixture in mixtures:
            _check_mixture(mixture, rate)
            batch.append(mixture)
            if len(batch) == batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
        drain(0)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
        model.train(was_training)

    info = {"model": getattr(model, "registered_name", "") or type(model).__name__,
            "forward_kwargs": {k: _jsonable(v) for k, v in forward_kwargs.items()}, "source": source}
    result = EvaluationResult(rows, rate, tuple(group_by), info)
    if out_dir is not None:
        result.write(out_dir)
    return result


# --------------------------------------------------------------------------------------------


def _scoring_pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)


def _init_worker() -> None:
    """Scoring workers use one thread each: the cores are already shared among processes."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    import sys

    if "torch" in sys.modules:  # only when the parent's __main__ imported it (forkserver preload)
        sys.modules["torch"].set_num_threads(1)


def _check_mixture(mixture: "Mixture", rate: int) -> None:
    if mixture.sample_rate != rate:
        raise AudioError(
            f"mixture {mixture.id} is at {mixture.sample_rate} Hz but the model runs at {rate} Hz;"
            f" make the test set at {rate} Hz or use a model for {mixture.sample_rate} Hz"
        )
    noisy, clean = np.asarray(mixture.noisy), np.asarray(mixture.clean)
    if noisy.ndim != 1 or noisy.shape != clean.shape or noisy.size == 0:
        raise AudioError(
            f"mixture {mixture.id}: noisy {noisy.shape} and clean {clean.shape} must be equally long"
            " non-empty 1-D waveforms"
        )


def _row_base(mixture: "Mixture") -> dict[str, Any]:
    row: dict[str, Any] = {"id": mixture.id}
    for key, value in mixture.meta.items():
        if value is None or isinstance(value, _SCALAR):
            name = f"meta_{key}" if key in METRICS or key == "id" else key
            row[name] = value.item() if isinstance(value, np.generic) else value
    return row


def _means(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    optional = [k for base in DNSMOS_KEYS for k in (base, f"{base}_noisy") if any(k in row for row in rows)]
    for metric in (*METRICS, *optional):
        values = [row[metric] for row in rows if row.get(metric) is not None]
        means[metric] = float(np.mean(values)) if values else None
    return means


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "n": len(rows),
        "pesq_failures": sum(row["pesq"] is None for row in rows),
        "pesq_noisy_failures": sum(row["pesq_noisy"] is None for row in rows),
        "stoi_failures": sum(row["stoi"] is None for row in rows),
        **_means(rows),
    }


def _sorted(values: Iterable[Any]) -> list[Any]:
    values = list(values)
    numeric = [v for v in values if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)]
    others = sorted((v for v in values if v not in numeric and v is not None), key=str)
    return sorted(numeric) + others + ([None] if None in values else [])


def _label(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # snr 5.0 -> "5"
    return str(value)


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}" if metric.startswith(("si_sdr", "pesq")) else f"{value:.3f}"


def _pesq_description(rate: int) -> str:
    mode, pesq_rate = pesq_mode(rate)
    band = "wideband (P.862.2)" if mode == "wb" else "narrowband (P.862)"
    resampled = "" if pesq_rate == rate else f", resampled from {rate} Hz"
    return f"PESQ {band} at {pesq_rate} Hz{resampled}"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

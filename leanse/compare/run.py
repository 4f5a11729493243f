"""``leanse compare``: every system on the same files, one table, plots and a listening page.

Work flow, per system: the files not yet in its per-file log (``OUT/per_file/LABEL.jsonl``) are
enhanced and scored by :func:`leanse.evaluate.evaluate_model` (one code path for leanse models and
peers), each row appended to the log as soon as it is scored, so an interrupted comparison resumes
where it stopped; its cost (:meth:`System.cost`, from :mod:`leanse.complexity`) is cached beside
the log. Then the summaries, ``results.csv`` / ``results.json``, ``report.md``, the PNG plots and
the self-contained ``report.html`` are written from the logs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leanse.compare.data import GROUP_BY, MEASURED_NOTE, DataSource, bin_low, open_data
from leanse.compare.systems import System, load_system, unique_labels
from leanse.errors import ConfigError
from leanse.evaluate import EvaluationResult, _write_atomic
from leanse.metrics import SI_SDR_CONVENTION

#: (key, column title, digits) of the quality table.
QUALITY = [("si_sdri", "SI-SDRi (dB)", 2), ("pesq", "PESQ", 2), ("stoi", "STOI", 3), ("estoi", "ESTOI", 3),
           ("dnsmos_sig", "DNSMOS SIG", 2), ("dnsmos_bak", "DNSMOS BAK", 2), ("dnsmos_ovrl", "DNSMOS OVRL", 2)]
#: (key, column title) of the cost table.
COST = [("params", "params"), ("macs_per_second_paper", "MACs/s (paper)"),
        ("macs_per_second_exact", "MACs/s (exact)"), ("bytes", "bytes"), ("rtf", "RTF (1 thread)"),
        ("latency_ms", "latency (ms)")]
NOISY = "noisy input"


@dataclass
class SystemResult:
    system: System
    result: EvaluationResult
    cost: dict[str, Any]

    @property
    def label(self) -> str:
        return self.system.label


@dataclass
class Comparison:
    out: Path
    data: DataSource
    results: list[SystemResult]
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # name -> written path

    def overall_rows(self) -> list[dict[str, Any]]:
        """One row per system, plus the unprocessed input first (quality of the noisy files)."""
        rows = []
        if self.results:
            means = self.results[0].result.means
            rows.append({"system": NOISY, "kind": "input", "n": self.results[0].result.count,
                         **{k: (0.0 if k == "si_sdri" and self.data.has_clean else means.get(f"{k}_noisy"))
                            for k, _, _ in QUALITY}})
        for item in self.results:
            means = item.result.means
            rows.append({"system": item.label, "kind": item.system.kind, "n": item.result.count,
                         **{k: means.get(k) for k, _, _ in QUALITY}, **item.cost,
                         "pesq_failures": item.result.pesq_failures})
        return rows

    def group_rows(self, key: str) -> list[dict[str, Any]]:
        """Rows per (value of ``key``, system), noisy input first in each group."""
        rows = []
        for index, item in enumerate(self.results):
            for value, summary in item.result.groups().get(key, {}).items():
                if index == 0:
                    rows.append({key: value, "system": NOISY, "n": summary["n"],
                                 **{k: (0.0 if k == "si_sdri" and self.data.has_clean else summary.get(f"{k}_noisy"))
                                    for k, _, _ in QUALITY}})
                rows.append({key: value, "system": item.label, "n": summary["n"],
                             **{k: summary.get(k) for k, _, _ in QUALITY}})
        order = {label: i for i, label in enumerate([NOISY, *(r.label for r in self.results)])}
        return sorted(rows, key=lambda r: (bin_low(r[key]) if key == "snr_bin" else 0, str(r[key]), order[r["system"]]))

    @property
    def primary_metric(self) -> str:
        """What the plots show: PESQ with clean references, DNSMOS OVRL without."""
        return "pesq" if self.data.has_clean else "dnsmos_ovrl"


def compare_models(
    specs: list[str],
    data: str | Path,
    out: str | Path,
    peers: list[str] | None = None,
    limit: int | None = None,
    workers: int = 1,
    dnsmos: bool | None = None,
    rtf: bool = True,
    samples: int = 4,
    progress: bool | None = None,
    sample_rate: int | None = None,
) -> Comparison:
    """Score every MODEL spec and peer on ``data``; write the report files into ``out``.

    ``dnsmos=None`` scores DNSMOS when its extra is installed (it must be for data without clean
    references). ``progress=None`` shows a bar on a terminal only. ``samples`` files go into
    ``report.html`` with a player per system.
    """
    from leanse.metrics import dnsmos_available

    out = Path(out)
    systems = [load_system(spec) for spec in specs] + [load_system(peer) for peer in (peers or [])]
    if not systems:
        raise ConfigError("nothing to compare: give at least one MODEL or --peers")
    unique_labels(systems)
    rate = sample_rate or data_rate(data, systems)
    for system in systems:
        if system.kind == "peer":
            system.model.sample_rate = rate
        elif system.sample_rate != rate:
            system.data_rate = rate
            system.notes.append(f"{system.label} runs at {system.sample_rate} Hz: its input is resampled from "
                                f"{rate} Hz and its output back (it hears 0-{system.sample_rate // 2000} kHz only)")
    source = open_data(data, rate, limit)
    if dnsmos is None:
        dnsmos = dnsmos_available()
    if not source.has_clean and not dnsmos:
        raise ConfigError(f"--data {data}: no clean references, so only DNSMOS can score it: "
                          "pip install 'leanse[dnsmos]' (or drop --no-dnsmos)")
    _claim_folder(out, source)
    show = sys.stderr.isatty() if progress is None else progress
    pending = {s.label: _read_log(out, s, source.ids) for s in systems}
    total = sum(len(source) - len(done) for done in pending.values())
    bar = _progress_bar(total, show)
    results = []
    try:
        for system in systems:
            results.append(_run_system(out, system, source, pending[system.label], workers, dnsmos, rtf, bar))
    finally:
        if bar is not None:
            bar.close()
    comparison = Comparison(out, source, results, notes=list(source.notes))
    if any("snr_measured" in row for item in results for row in item.result.rows):
        comparison.notes.append(MEASURED_NOTE)
    comparison.notes += [note for s in systems for note in s.notes]
    write_outputs(comparison, samples)
    return comparison


def data_rate(data: str | Path, systems: list[System]) -> int:
    """The rate files are read and scored at: a recipe's own rate, else the highest model rate
    (16 kHz with peers only). Models at another rate run behind resampling."""
    from leanse.config import from_dict, load_yaml
    from leanse.data.datamodule import DataConfig

    if Path(data).is_file():
        recipe = load_yaml(data)
        return int(from_dict(DataConfig, recipe.get("data", recipe), "data").sample_rate)
    rates = [s.sample_rate for s in systems if s.kind != "peer"]
    return max(rates) if rates else 16000


def _claim_folder(out: Path, source: DataSource) -> None:
    """Create ``out``, or check that it holds a comparison of the same data (never mix two)."""
    marker = out / "compare.json"
    stamp = {"data": source.description, "ids": source.ids}
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous.get("ids") != source.ids or previous.get("data", {}).get("path") != source.description.get("path"):
            raise ConfigError(f"{out}: holds a comparison of other data ({previous.get('data', {}).get('path')}); "
                              "use another -o folder")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not a leanse comparison; give a new or empty -o folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(marker, json.dumps(stamp) + "\n")


def write_text(path: Path, text: str) -> None:
    """Atomic write (evaluate's helper) with the permissions of an ordinary file: a report is for
    sharing, while the temporary file it comes from is private (0600)."""
    import os

    _write_atomic(path, text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _log_path(out: Path, system: System) -> Path:
    return out / "per_file" / f"{_safe(system.label)}.jsonl"


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@=" else "_" for c in label)


def _read_log(out: Path, system: System, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Rows already scored for ``system`` (a line cut short by a kill is dropped)."""
    path = _log_path(out, system)
    wanted = set(ids)
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    lines = path.read_text().splitlines()
    if lines:
        header = json.loads(lines[0])
        if header.get("spec") != system.spec:
            raise ConfigError(f"{path}: was scored for {header.get('spec')!r}, not {system.spec!r}; "
                              "use another -o folder")
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("id") in wanted:
            done[row["id"]] = row
    return done


def _run_system(out: Path, system: System, source: DataSource, done: dict[str, dict[str, Any]],
                workers: int, dnsmos: bool, rtf: bool, bar: Any) -> SystemResult:
    from leanse.evaluate import evaluate_model

    path = _log_path(out, system)
    path.parent.mkdir(parents=True, exist_ok=True)
    todo = [i for i, file_id in enumerate(source.ids) if file_id not in done]
    if todo:
        fresh = not path.is_file() or not path.read_text().strip()
        with path.open("a") as log:
            if fresh:
                log.write(json.dumps({"spec": system.spec, "label": system.label}) + "\n")
            elif not path.read_text().endswith("\n"):
                log.write("\n")  # a line cut by a kill: start a new one

            def on_row(row: dict[str, Any]) -> None:
                log.write(json.dumps(row, default=_json_default) + "\n")
                log.flush()
                done[row["id"]] = json.loads(json.dumps(row, default=_json_default))
                if bar is not None:
                    bar.update(1)

            if bar is not None:
                bar.set_description(system.label)
            evaluate_model(system.runner, (source.load(i) for i in todo), workers=workers, group_by=GROUP_BY,
                           dnsmos=dnsmos, on_row=on_row, **system.forward_kwargs)
    rows = [done[file_id] for file_id in source.ids]
    for row in rows:
        source.relabel(row)
    cost = _cached_cost(out, system, rtf)
    return SystemResult(system, EvaluationResult(rows, system.data_rate or system.sample_rate, GROUP_BY), cost)


def _cached_cost(out: Path, system: System, rtf: bool) -> dict[str, Any]:
    path = out / "per_file" / f"{_safe(system.label)}.cost.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("spec") == system.spec and (cached["cost"].get("rtf") is not None or not rtf):
            return cached["cost"]
    cost = system.cost(rtf=rtf)
    _write_atomic(path, json.dumps({"spec": system.spec, "cost": cost}) + "\n")
    return cost


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _progress_bar(total: int, show: bool) -> Any:
    if not show or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", dynamic_ncols=True, file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def write_outputs(comparison: Comparison, samples: int = 4) -> None:
    """``results.csv``, ``results.json``, the plots, ``report.md`` and ``report.html``."""
    from leanse.compare import html, plots

    out = comparison.out
    overall = comparison.overall_rows()
    columns: list[str] = []
    for row in overall:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in overall)
    write_text(out / "results.csv", buffer.getvalue())
    comparison.files["results.csv"] = out / "results.csv"
    document = {
        "data": comparison.data.description,
        "conventions": {"si_sdr": SI_SDR_CONVENTION, "quality": "means over files; PESQ/STOI failures left out",
                        "rtf": "median of 3 timed passes on 4 s at 1 thread, after one warm-up (leanse.complexity)",
                        "macs": "paper: thop's conventions; exact: every multiply (leanse.complexity)"},
        "notes": comparison.notes,
        "systems": [{"label": r.label, "spec": r.system.spec, "kind": r.system.kind, "cost": r.cost,
                     "summary": r.result.summary()} for r in comparison.results],
        "overall": overall,
        "groups": {key: comparison.group_rows(key) for key in GROUP_BY},
    }
    write_text(out / "results.json", json.dumps(document, indent=2, default=_json_default) + "\n")
    comparison.files["results.json"] = out / "results.json"
    comparison.files.update(plots.write_plots(comparison))
    write_text(out / "report.md", markdown_report(comparison))
    comparison.files["report.md"] = out / "report.md"
    comparison.files["report.html"] = html.write_report_html(comparison, samples)


def quality_table(rows: list[dict[str, Any]], first: list[str], metrics: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Rows -> display rows with formatted numbers (``-`` where a value is missing)."""
    shown = []
    for row in rows:
        cells = {name: row.get(name, "") for name in first}
        for key, title, digits in metrics:
            value = row.get(key)
            cells[title] = "-" if value is None else f"{value:.{digits}f}"
        shown.append(cells)
    return shown


def cost_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for row in rows:
        if row["system"] == NOISY:
            continue
        cells = {"system": row["system"]}
        for key, title in COST:
            cells[title] = format_cost(key, row.get(key))
        shown.append(cells)
    return shown


def format_cost(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key.startswith("macs"):
        return f"{value / 1e6:.1f}M" if value < 1e9 else f"{value / 1e9:.2f}G"
    if key in ("params", "bytes"):
        return f"{int(value):,}"
    if key == "rtf":
        return f"{value:.4f}"
    return f"{value:.1f}"


def shown_metrics(comparison: Comparison) -> list[tuple[str, str, int]]:
    """Quality columns that have a value for some system (no DNSMOS columns when it did not run)."""
    rows = comparison.overall_rows()
    return [m for m in QUALITY if any(r.get(m[0]) is not None for r in rows[1:])]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(comparison: Comparison) -> str:
    data = comparison.data.description
    metrics = shown_metrics(comparison)
    overall = comparison.overall_rows()
    parts = [
        "# leanse compare",
        f"Data: {data['kind']} `{data['path']}`, {data['files']} files. {SI_SDR_CONVENTION}; PESQ wideband at 16 kHz; "
        "PESQ/STOI failures are left out of the means (counted in results.csv); DNSMOS P.835 from speechmos.",
        "## Quality", markdown_table(quality_table(overall, ["system", "n"], metrics)),
        "## Cost",
        "From `leanse.complexity`: MACs/s in thop's convention (paper) and counting every multiply (exact); bytes of "
        "the weights on disk; RTF = median wall time / audio time at 1 thread; latency = the model's algorithmic "
        "latency (one STFT window for STFT models; for a peer, its measured and removed delay).",
        markdown_table(cost_table(overall)),
    ]
    for key in GROUP_BY:
        rows = comparison.group_rows(key)
        if rows:
            parts += [f"## By {key}", markdown_table(quality_table(rows, [key, "system", "n"], metrics))]
    figures = [name for name in comparison.files if name.endswith(".png")]
    if figures:
        parts += ["## Plots", *(f"![{name}]({name})" for name in figures)]
    if comparison.notes:
        parts += ["## Notes", *(f"- {note}" for note in comparison.notes)]
    parts.append("Listen: open `report.html` in a browser (self-contained, works offline).")
    return "\n\n".join(parts) + "\n"

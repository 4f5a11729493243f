"""leanse models and their peers on the real-speech dev set, in one run.

    python benchmarks/bench_real_dev.py --dev data/real/dev \
        --models leanse-base leanse-tiny runs/leanse_base/best --peers rnnoise,dfn3 --out runs/real_dev

A fixed configuration of ``leanse compare`` (:func:`leanse.compare.compare_models`, which does the
work): every system enhances exactly the same files (``dev/noisy``) and is scored against the same
references (``dev/clean``) by :func:`leanse.evaluate.evaluate_model`: SI-SDRi, PESQ-WB, STOI,
ESTOI and DNSMOS P.835. Peers run in-process through their bundled C libraries with their
algorithmic delay removed (:mod:`leanse.peers`). Cost from ``leanse.complexity``: parameters,
MACs/s, RTF at one thread (median of 3 passes over 4 s, peers including their 16 <-> 48 kHz
resampling). The comparison (report.md, report.html, plots, per-file logs that resume) goes to
``--out/compare``; this script prints markdown tables (overall, by SNR bin, by noise type) and
writes them as ``tables.md`` and ``results.json`` (the rows ``scripts/bundle_model.py`` reads).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from leanse.compare import compare_models
from leanse.compare.run import NOISY

COLUMNS = [("si_sdri", "SI-SDRi", 2), ("pesq", "PESQ", 2), ("stoi", "STOI", 3), ("estoi", "ESTOI", 3),
           ("dnsmos_sig", "SIG", 2), ("dnsmos_bak", "BAK", 2), ("dnsmos_ovrl", "OVRL", 2)]


def fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], keys: list[str]) -> str:
    header = ["system", *keys, *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["system"], *(str(row.get(k, "")) for k in keys),
                 *(fmt(row.get(metric), digits) for metric, _, digits in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=Path, default=Path("data/real/dev"))
    parser.add_argument("--models", nargs="*", default=[], help="checkpoint folders or bundled names")
    parser.add_argument("--peers", default="rnnoise,dfn3", help="comma-separated: rnnoise, dfn3, noisereduce (empty: none)")
    parser.add_argument("--out", type=Path, default=Path("runs/real_dev"))
    parser.add_argument("--limit", type=int, default=None, help="score only the first N files")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes (0: score in this process)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    comparison = compare_models(args.models, args.dev, args.out / "compare",
                                peers=[p for p in args.peers.split(",") if p], limit=args.limit, workers=args.workers,
                                dnsmos=True)
    overall = []
    for row in comparison.overall_rows():
        is_noisy = row["system"] == NOISY
        overall.append({
            "system": row["system"], **{m: row.get(m) for m, _, _ in COLUMNS},
            "params": "" if is_noisy else ("-" if row.get("params") is None else f"{row['params']:,}"),
            "MACs/s": "" if is_noisy else ("-" if row.get("macs_per_second_paper") is None
                                           else f"{row['macs_per_second_paper'] / 1e6:.1f}M"),
            "RTF": "" if is_noisy else ("-" if row.get("rtf") is None else f"{row['rtf']:.4f}"),
            "latency ms": "" if is_noisy else ("-" if row.get("latency_ms") is None else f"{row['latency_ms']:.1f}"),
        })
    by_snr = comparison.group_rows("snr_bin")
    by_noise = comparison.group_rows("noise_type")
    count = len(comparison.data)
    text = "\n\n".join([
        f"Real-speech dev set ({args.dev}, {count} files; PESQ wideband; zero-mean SI-SDR; DNSMOS P.835; "
        "RTF at 1 thread, median of 3 passes over 4 s)",
        table(overall, ["params", "MACs/s", "RTF", "latency ms"]),
        "By SNR bin (dB)", table(by_snr, ["snr_bin", "n"]),
        "By noise type", table(by_noise, ["noise_type", "n"]),
        *comparison.notes,
    ])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({"overall": overall, "by_snr": by_snr, "by_noise": by_noise}, indent=2))
    print(f"\nthe whole comparison (report.html, plots): {args.out / 'compare'}")


if __name__ == "__main__":
    main()

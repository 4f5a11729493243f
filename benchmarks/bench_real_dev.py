"""leanse models and their peers on the real-speech dev set, in one run.

    python benchmarks/bench_real_dev.py --dev data/real/dev \
        --models leanse-base leanse-tiny runs/leanse_base/best --peers rnnoise,dfn3 --out runs/real_dev

Every system enhances exactly the same files (``dev/noisy``) and is scored against the same
references (``dev/clean``) by :func:`leanse.evaluate.evaluate_model`: SI-SDRi, PESQ-WB, STOI,
ESTOI and DNSMOS P.835. Peers run in-process through their bundled C libraries with their
algorithmic delay removed (:mod:`leanse.peers`). Cost: parameters and MACs/s from
``complexity.py``; RTF at one thread on the first 20 s of dev audio, measured here in the same run
(best of three), peers including their 16 <-> 48 kHz resampling. Prints markdown tables (overall,
by SNR bin, by noise type) and writes them with per-file CSVs under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from leanse.data.devset import paired_mixtures
from leanse.evaluate import evaluate_model

COLUMNS = [("si_sdri", "SI-SDRi", 2), ("pesq", "PESQ", 2), ("stoi", "STOI", 3), ("estoi", "ESTOI", 3),
           ("dnsmos_sig", "SIG", 2), ("dnsmos_bak", "BAK", 2), ("dnsmos_ovrl", "OVRL", 2)]


def rtf_of(enhance, audio: np.ndarray, rate: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        enhance(audio)
        best = min(best, time.perf_counter() - start)
    return best / (len(audio) / rate)


def load_system(name: str):
    """(label, model-like object, enhance function for timing, cost dict)."""
    from leanse.peers import PEERS, PeerModel, get_peer

    if name in PEERS:
        peer = get_peer(name)
        model = PeerModel(peer)
        cost = {"params": None, "macs_per_second": None, "latency_ms": peer.delay_ms}
        return peer.name, model, lambda x: peer.enhance(x, 16000), cost
    from leanse.checkpoint import load_checkpoint
    from leanse.complexity import profile_model

    model = load_checkpoint(name).eval()
    profile = profile_model(model, seconds=1.0, convention="exact", rtf=False)

    def enhance(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)[None])[0].numpy()

    latency = getattr(model, "latency_samples", None)
    cost = {"params": profile["params"], "macs_per_second": float(profile["macs_per_second"]),
            "latency_ms": None if latency is None else 1000 * latency / model.sample_rate}
    path = Path(name)
    label = (path.parent.name if path.name == "best" else path.name) if path.exists() else name
    return label, model, enhance, cost


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
    parser.add_argument("--peers", default="rnnoise,dfn3", help="comma-separated: rnnoise, dfn3 (empty: none)")
    parser.add_argument("--out", type=Path, default=Path("runs/real_dev"))
    parser.add_argument("--limit", type=int, default=None, help="score only the first N files")
    args = parser.parse_args()
    torch.set_num_threads(1)

    timing_audio = np.concatenate([m.noisy for m in paired_mixtures(args.dev, limit=5)])[: 20 * 16000]
    systems = [*args.models, *[p for p in args.peers.split(",") if p]]
    overall, by_snr, by_noise = [], [], []
    noisy_row: dict | None = None
    for name in systems:
        label, model, enhance, cost = load_system(name)
        rtf = rtf_of(enhance, timing_audio, 16000)
        result = evaluate_model(model, paired_mixtures(args.dev, limit=args.limit), out_dir=args.out / label,
                                workers=0, group_by=("snr_bin", "noise_type"), dnsmos=True)
        summary = result.summary()
        if noisy_row is None:
            noisy = summary["overall"]
            noisy_row = {"system": "noisy input", "si_sdri": 0.0, **{m: noisy.get(f"{m}_noisy") for m, _, _ in COLUMNS[1:]}}
            overall.append({**noisy_row, "params": "", "MACs/s": "", "RTF": "", "latency ms": ""})
            for key, target in (("snr_bin", by_snr), ("noise_type", by_noise)):
                for value, group in summary["groups"][key].items():
                    target.append({"system": "noisy input", key: value, "n": group["n"], "si_sdri": 0.0,
                                   **{m: group.get(f"{m}_noisy") for m, _, _ in COLUMNS[1:]}})
        overall.append({
            "system": label, **{m: summary["overall"].get(m) for m, _, _ in COLUMNS},
            "params": "-" if cost["params"] is None else f"{cost['params']:,}",
            "MACs/s": "-" if cost["macs_per_second"] is None else f"{cost['macs_per_second'] / 1e6:.1f}M",
            "RTF": f"{rtf:.4f}",
            "latency ms": "-" if cost["latency_ms"] is None else f"{cost['latency_ms']:.1f}",
        })
        for key, target in (("snr_bin", by_snr), ("noise_type", by_noise)):
            for value, group in summary["groups"][key].items():
                target.append({"system": label, key: value, "n": group["n"], **{m: group.get(m) for m, _, _ in COLUMNS}})
        print(f"{label}: done ({result.count} files, RTF {rtf:.4f})", flush=True)

    count = args.limit or len(list((args.dev / "noisy").iterdir()))
    text = "\n\n".join([
        f"Real-speech dev set ({args.dev}, {count} files; PESQ wideband; zero-mean SI-SDR; DNSMOS P.835; "
        "RTF at 1 thread on 20 s, best of 3)",
        table(overall, ["params", "MACs/s", "RTF", "latency ms"]),
        "By SNR bin (dB)", table(sorted(by_snr, key=lambda r: (r["snr_bin"], r["system"] != "noisy input")), ["snr_bin", "n"]),
        "By noise type", table(sorted(by_noise, key=lambda r: (r["noise_type"], r["system"] != "noisy input")), ["noise_type", "n"]),
    ])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({"overall": overall, "by_snr": by_snr, "by_noise": by_noise}, indent=2))


if __name__ == "__main__":
    main()

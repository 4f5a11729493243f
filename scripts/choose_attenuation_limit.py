"""Choose a mask model's attenuation limit on the real-speech dev set (issue 10).

Issue 10 asks that no bundled model lower mean STOI or ESTOI below the noisy input's in any SNR
bin. A mask RNN that suppresses hard can remove weak speech cues with the noise at low SNR; an
attenuation limit (``attenuation_limit_db``, gains floored at ``-limit`` dB) keeps them. This script
scores each candidate limit on the dev files (STOI / ESTOI only: cheap, no DNSMOS) and picks the
strongest suppression that keeps every SNR bin at or above the noisy input. The dev set is tuned
on by design; it is never a test set.

    python scripts/choose_attenuation_limit.py runs/leanse_tiny_ft/best --limit 100 \
        --out reports/real-dev/attenuation-leanse_tiny_ft.md
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from leanse.checkpoint import load_checkpoint
from leanse.metrics import estoi_score, stoi_score

CANDIDATES_DB = [math.inf, 30.0, 24.0, 20.0, 16.0, 14.0, 12.0, 10.0, 8.0]  # inf: no limit


def bin_means(scores: dict[str, list[tuple[float, float]]]) -> dict[str, np.ndarray]:
    return {b: np.mean(values, axis=0) for b, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a mask-RNN checkpoint folder or bundled name")
    parser.add_argument("--dev", type=Path, default=Path("data/real/dev"))
    parser.add_argument("--limit", type=int, default=100, help="the first N dev files (the model cards' 100)")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_checkpoint(args.checkpoint).eval()
    if not hasattr(model, "attenuation_limit_db"):
        raise SystemExit(f"{args.checkpoint}: not a mask model (no attenuation limit to choose)")
    rows = list(csv.DictReader((args.dev / "list.csv").open()))[: args.limit]
    noisy_scores: dict[str, list] = defaultdict(list)
    model_scores: dict[float, dict[str, list]] = {limit: defaultdict(list) for limit in CANDIDATES_DB}
    for row in rows:
        noisy, rate = sf.read(args.dev / "noisy" / f"{row['id']}.wav", dtype="float32")
        clean, _ = sf.read(args.dev / "clean" / f"{row['id']}.wav", dtype="float32")
        pair = (stoi_score(clean, noisy, rate), estoi_score(clean, noisy, rate))
        if None in pair:  # pystoi cannot score this file (too few non-silent frames): skip it for all
            continue
        noisy_scores[row["snr_bin"]].append(pair)
        for limit in CANDIDATES_DB:
            model.attenuation_limit_db = None if math.isinf(limit) else limit
            with torch.no_grad():
                enhanced = model(torch.from_numpy(noisy)[None])[0].numpy()
            model_scores[limit][row["snr_bin"]].append(
                (stoi_score(clean, enhanced, rate), estoi_score(clean, enhanced, rate)))

    reference = bin_means(noisy_scores)
    bins = sorted(reference, key=lambda b: float(b.split("..")[0]))
    lines = [f"Attenuation limit of {args.checkpoint} on the first {args.limit} dev files: mean STOI / ESTOI "
             f"per SNR bin (dB); noisy input first. A limit passes when no bin falls below the noisy input.", "",
             "| limit | " + " | ".join(bins) + " | passes |", "|---|" + "---|" * (len(bins) + 1),
             "| noisy input | " + " | ".join(f"{reference[b][0]:.3f} / {reference[b][1]:.3f}" for b in bins) + " | |"]
    chosen = None
    for limit in CANDIDATES_DB:
        means = bin_means(model_scores[limit])
        passes = all(means[b][0] >= reference[b][0] and means[b][1] >= reference[b][1] for b in bins)
        if passes and chosen is None:  # candidates run from the strongest suppression down
            chosen = limit
        label = "none" if math.isinf(limit) else f"{limit:g} dB"
        lines.append(f"| {label} | " + " | ".join(f"{means[b][0]:.3f} / {means[b][1]:.3f}" for b in bins)
                     + f" | {'yes' if passes else 'no'} |")
    verdict = ("no candidate passes" if chosen is None
               else "chosen: no limit" if math.isinf(chosen) else f"chosen: {chosen:g} dB")
    lines += ["", verdict]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

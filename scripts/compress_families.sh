#!/usr/bin/env bash
# 004's C1 / C2 on more model families at tiny scale: DPRNN-TasNet (enhancement, 8 kHz), BLOOM-Net
# (8 kHz, every exit scored) and a hard-gated sparse ensemble (each specialist and the gate), each
# trained for 1.5 min on the demo corpus (as a single model: a BLOOM-Net on its last exit, an
# ensemble with the gate untrained), then compressed with 2 pruning iterations of 1 epoch.
# A few minutes per family on one thread.     bash scripts/compress_families.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
LEANSE=${LEANSE:-.venv/bin/leanse}
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/compress-families}
mkdir -p "$OUT"
[ -d data/demo ] || $LEANSE data demo --out data/demo
for spec in dprnn:tiny-dprnn-tasnet:8000 bloom:tiny-bloom:8000 ensemble:tiny-sparse-ensemble:16000; do
  IFS=: read -r family preset rate <<< "$spec"
  $PY - "$OUT/$family.yaml" "$family" "$preset" "$rate" <<'PY'
import sys, yaml
path, family, preset, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
yaml.safe_dump({
    "name": f"compress_{family}", "kind": "single", "model": {"preset": preset},
    "data": {"corpus": "demo", "root": "data/demo", "sample_rate": rate, "segment_seconds": 1.0,
             "snrs": [-5, 0, 5, 10], "examples_per_epoch": 160, "valid_size": 16, "test_size": 24,
             "eval_segment_seconds": 2.0, "batch_size": 8},
    "train": {"optimizer": "adam", "lr": 0.001, "max_epochs": 100, "max_minutes": 1.5,
              "grad_clip": 5.0, "loss": "si_sdr", "accelerator": "cpu", "threads": 1,
              "progress_bar": False},
    "compress": {"fine_tune_epochs": 1, "max_iterations": 2, "sensitivity_size": 6,
                 "score_size": 8, "alpha_prune": 0.3, "alpha_quant": 0.1, "stoi_drop": 0.05,
                 "pesq_drop": 0.2, "max_bits": 8, "min_removed": 0.01},
    "evaluate": {"workers": 1},
}, open(path, "w"))
PY
  [ -d "$OUT/$family-train/best" ] || $LEANSE train "$OUT/$family.yaml" out_dir="$OUT/$family-train"
  for pipeline in c1 c2; do
    $LEANSE compress "$OUT/$family-train/best" --pipeline $pipeline --data "$OUT/$family.yaml" \
        -o "$OUT/$family-$pipeline"
  done
done

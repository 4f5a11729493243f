#!/usr/bin/env bash
# Paper 004 at tiny scale: train a mid-size mask RNN (LSTM 128 x 2) on the demo corpus, compress it
# with C1 and C2, run the two ablations (C1 without the l1 penalty: Fig. 4; C1 with a common
# pruning ratio instead of per-tensor sensitivity: Fig. 7's P2), and write the report.
#   bash scripts/compress_study.sh [OUT_REPORT_DIR]        (~1 h on two busy CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
LEANSE=${LEANSE:-.venv/bin/leanse}
PY=${PY:-.venv/bin/python}
RECIPE=recipes/compression/tiny-mask-rnn.yaml
OUT=${1:-runs/compression-tiny-report}
[ -d data/demo ] || $LEANSE data demo --out data/demo
$LEANSE train $RECIPE out_dir=runs/c-h128
$LEANSE train $RECIPE out_dir=runs/c-h32 model.hidden_size=32 name=compress_tiny_mask_rnn_h32  # Table IV: small, directly
$LEANSE compress runs/c-h128/best --pipeline c1 --data $RECIPE -o runs/c-h128-c1
$LEANSE compress runs/c-h128/best --pipeline c2 --data $RECIPE -o runs/c-h128-c2
$LEANSE compress runs/c-h128/best --pipeline c1 --data $RECIPE -o runs/c-h128-c1-noreg --no-regularizer --max-iterations 3
$LEANSE compress runs/c-h128/best --pipeline c1 --data $RECIPE -o runs/c-h128-c1-p2 --common-ratio 0.5 --max-iterations 3
# lambda_1 by 004's rule (R_l1 one order of magnitude below the loss: ~1 against |neg. SI-SDR| ~ 10)
$LEANSE compress runs/c-h128/best --pipeline c1 --data $RECIPE -o runs/c-h128-c1-l15 --max-iterations 3 --set compress.weight=15
$PY -m leanse.compress.report runs/c-h128/best runs/c-h128-c1 runs/c-h128-c2 runs/c-h128-c1-noreg \
    runs/c-h128-c1-p2 runs/c-h128-c1-l15 --small runs/c-h32/best --data $RECIPE --out "$OUT"

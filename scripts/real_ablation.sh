#!/usr/bin/env bash
# Issue 10's ablation: what each training ingredient buys on the real-speech dev set.
# Each variant is the leanse-tiny recipe (recipes/real/tiny.yaml) trained for the same number of
# epochs (20 x 1,600 mixtures) with one ingredient changed; then all are scored on the fixed dev
# set in one run of benchmarks/bench_real_dev.py. Usage:
#   bash scripts/real_ablation.sh train all|noaug|procedural|spectral   # one variant (1 torch thread)
#   bash scripts/real_ablation.sh score    # dev-set table (first 100 files, as the model cards) of every finished variant
set -euo pipefail
cd "$(dirname "$0")/.."
common=(train.max_epochs=20 train.max_minutes=40 train.early_stop_patience=100)
case "${1:-}" in
  train)
    case "${2:-}" in
      all) extra=() ;;                                            # every ingredient
      noaug) extra=(data.augment=null) ;;                         # no speed / EQ / reverb / band-limit / level / clip
      procedural) extra=("data.train_noise=[train-procedural]") ;; # no real noise recordings
      spectral) extra=(train.loss=si_sdr_spectral) ;;             # SI-SDR + compressed spectral MSE
      *) echo "variant: all | noaug | procedural | spectral" >&2; exit 2 ;;
    esac
    OMP_NUM_THREADS=1 exec .venv/bin/leanse train recipes/real/tiny.yaml "name=ablation_tiny_$2" "${common[@]}" "${extra[@]}" ;;
  score)
    runs=(); for v in all noaug procedural spectral; do [ -d "runs/ablation_tiny_$v/best" ] && runs+=("runs/ablation_tiny_$v/best"); done
    exec .venv/bin/python benchmarks/bench_real_dev.py --dev data/real/dev --models "${runs[@]}" --peers "" --limit 100 --out runs/real_ablation ;;
  *) echo "usage: $0 train all|noaug|procedural|spectral | score" >&2; exit 2 ;;
esac

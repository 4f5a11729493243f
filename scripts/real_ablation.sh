#!/usr/bin/env bash
# Issue 10's ablation: what each training ingredient buys on the real-speech dev set.
# Each variant is the leanse-tiny recipe (recipes/real/tiny.yaml) trained for the same number of
# epochs (20 x 1,600 mixtures) with one ingredient changed; then all are scored on the fixed dev
# set in one run of benchmarks/bench_real_dev.py. Usage:
#   bash scripts/real_ablation.sh train all|noaug|procedural|spectral|espeak   # one variant (1 torch thread)
#   bash scripts/real_ablation.sh score    # dev-set table (first 100 files, as the model cards) of every finished variant
set -euo pipefail
cd "$(dirname "$0")/.."
common=(train.max_epochs=20 train.max_minutes=120 train.early_stop_patience=100)  # 20 epochs end every run; the cap is a safety net
ESPEAK=data/demo_espeak100

# The espeak variant adds the demo corpus's robotic pseudo-speakers (all three of its subsets: none
# of them is a real dev voice) to the real training voices, through a second manifest; the noise
# and everything else stay those of recipes/real/tiny.yaml.
espeak_manifest() {
  [ -f "$ESPEAK/demo_corpus.json" ] || .venv/bin/leanse data demo --out "$ESPEAK" --speakers 100
  [ -f "$ESPEAK/manifest.csv" ] || .venv/bin/python - "$ESPEAK" <<'PY'
import csv, sys
from pathlib import Path
from leanse.data.corpora import read_librispeech
from leanse.data.demo import SUBSETS
root = Path(sys.argv[1]).resolve()
with open(root / "manifest.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["path", "speaker", "gender", "split", "source"])
    for utterance in read_librispeech(root, SUBSETS):
        writer.writerow([Path(utterance.path).relative_to(root), f"espeak-{utterance.speaker}",
                         utterance.gender, "train", "leanse data demo"])
PY
}
case "${1:-}" in
  train)
    case "${2:-}" in
      all) extra=() ;;                                            # every ingredient
      noaug) extra=(data.augment=null) ;;                         # no speed / EQ / reverb / band-limit / level / clip
      procedural) extra=("data.train_noise=[train-procedural]") ;; # no real noise recordings
      spectral) extra=(train.loss=si_sdr_spectral) ;;             # SI-SDR + compressed spectral MSE
      espeak)                                                     # + 100 espeak pseudo-speakers (2,000 utterances)
        espeak_manifest
        extra=("data.manifest=[data/real/manifest.csv,$ESPEAK/manifest.csv]") ;;
      *) echo "variant: all | noaug | procedural | spectral | espeak" >&2; exit 2 ;;
    esac
    OMP_NUM_THREADS=1 exec .venv/bin/leanse train recipes/real/tiny.yaml "name=ablation_tiny_$2" "${common[@]}" "${extra[@]}" ;;
  score)
    runs=(); for v in all noaug procedural spectral espeak; do [ -d "runs/ablation_tiny_$v/best" ] && runs+=("runs/ablation_tiny_$v/best"); done
    exec .venv/bin/python benchmarks/bench_real_dev.py --dev data/real/dev --models "${runs[@]}" --peers "" --limit 100 --out runs/real_ablation ;;
  *) echo "usage: $0 train all|noaug|procedural|spectral | score" >&2; exit 2 ;;
esac

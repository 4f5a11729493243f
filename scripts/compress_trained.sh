#!/usr/bin/env bash
# 004's C1 / C2 on two bases trained with their own papers' recipes (compress_families.sh trains
# every family as a single model for 1.5 min, which leaves an ensemble's gate and BLOOM-Net's early
# exits untrained):
#   - the tiny SNR-gated sparse ensemble of 000 (recipes/smole_snr/tiny.yaml: generalist ->
#     specialists -> gate -> fine-tuned ensemble), compressed as its hard-gated fine-tuned ensemble;
#   - BLOOM-Net trained block by block (003, recipes/bloom/tiny.yaml), compressed as BLOOM-FT.
# Each pipeline uses its base recipe's data (the ensemble: 16 kHz, SNRs -5/0/5/10 dB; BLOOM: 8 kHz,
# SNR in [-5, 10] dB, standardised mixtures) and compress_families.sh's compress settings with a
# third pruning iteration and validation batches of 8 / 16 mixtures; then `python -m leanse.compress.parts` scores every specialist and the
# gate / every exit before and after on the base recipe's test list (100 mixtures).
# One thread, beside other jobs: the ensemble trained in ~6 min, each pipeline ~5-8 min. The full
# BLOOM recipe also trains its baselines (11 stages); BLOOM_PATH_ONLY=1 trains only the 5 stages
# BLOOM-FT needs (baseline1/l1 = stage 1, stages 2-4, BLOOM-FT: ~9 min), with the recipe's settings
# and in the same folders, so a later `leanse train` of the recipe keeps them.
#     bash scripts/compress_trained.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
LEANSE=${LEANSE:-.venv/bin/leanse}
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/compress-trained}
mkdir -p "$OUT"
[ -d data/demo ] || $LEANSE data demo --out data/demo

# 1. the bases
[ -d "$OUT/smole_tiny/tiny-mask-rnn/finetune/best" ] || \
  $LEANSE train recipes/smole_snr/tiny.yaml out_dir="$OUT/smole_tiny" evaluate.workers=1
if [ "${BLOOM_PATH_ONLY:-0}" = 1 ]; then
  $PY - "$OUT/bloom_tiny" <<'PY'
import sys
from leanse.models import build_model
from leanse.train.bloom import AllExitsTask, ExitTask, _fit, bloom_model_config, bloom_stage_one
from leanse.train.engine import EnhancementTask, torch_threads
from leanse.train.recipe import load_recipe
from leanse.train.stages import recipe_stages, stage_train_config
from leanse.checkpoint import load_checkpoint
from leanse.data.datamodule import build_mixers
import torch

recipe = load_recipe("recipes/bloom/tiny.yaml", [f"out_dir={sys.argv[1]}", "evaluate.workers=1"])
stages, run_dir, config = recipe_stages(recipe), recipe.run_dir, bloom_model_config(recipe)
mixers = build_mixers(recipe.data)
with torch_threads(1):
    train = stage_train_config(recipe.train, stages.baseline1.train, "stages.baseline1.train")
    torch.manual_seed(recipe.train.seed)  # baseline1/l1 exactly as the full recipe trains it
    one = build_model({**config, "name": "resnet_tasnet", "num_blocks": 1})
    path = _fit(recipe, mixers, one, train, run_dir / "baseline1" / "l1", EnhancementTask(one, train), "baseline1-l1")
    path = bloom_stage_one(config, path, run_dir / "bloom" / "stage1", recipe.train.seed)
    train = stage_train_config(recipe.train, stages.bloom.train, "stages.bloom.train")
    for l in range(2, config["num_blocks"] + 1):
        model = load_checkpoint(path).train()
        trainable = model.freeze_below(l)
        path = _fit(recipe, mixers, model, train, run_dir / "bloom" / f"stage{l}",
                    ExitTask(model, train, l, lambda trainable=trainable: trainable), f"bloom-stage{l}")
    train = stage_train_config(recipe.train, stages.finetune.train, "stages.finetune.train")
    model = load_checkpoint(path).train()
    _fit(recipe, mixers, model, train, run_dir / "bloom_ft", AllExitsTask(model, train), "bloom-ft")
PY
else
  [ -d "$OUT/bloom_tiny/bloom_ft/best" ] || \
    $LEANSE train recipes/bloom/tiny.yaml out_dir="$OUT/bloom_tiny" evaluate.workers=1
fi

# 2. one data recipe per base: the base recipe's data and training settings, compress_families.sh's
#    compress settings (3 iterations, sensitivity / score batches 8 / 16: trained bases have more to lose)
write_recipe() {  # BASE_RECIPE OUT_YAML
  $PY - "$1" "$2" <<'PY'
import sys, yaml
base = yaml.safe_load(open(sys.argv[1]))
train = {k: v for k, v in base["train"].items() if k not in ("max_minutes", "early_stop_patience")}
yaml.safe_dump({
    "name": f"compress_{base['name']}", "kind": "single", "model": base["model"], "data": base["data"],
    "train": {**train, "threads": 1, "progress_bar": False},
    "compress": {"fine_tune_epochs": 1, "max_iterations": 3, "sensitivity_size": 8,
                 "score_size": 16, "alpha_prune": 0.3, "alpha_quant": 0.1, "stoi_drop": 0.05,
                 "pesq_drop": 0.2, "max_bits": 8, "min_removed": 0.01},
    "evaluate": {"workers": 1},
}, open(sys.argv[2], "w"))
PY
}
write_recipe recipes/smole_snr/tiny.yaml "$OUT/ensemble.yaml"
write_recipe recipes/bloom/tiny.yaml "$OUT/bloom.yaml"

# 3. C1 and C2 on each, then every part scored on the base recipe's test list
for spec in ensemble:smole_tiny/tiny-mask-rnn/finetune/best bloom:bloom_tiny/bloom_ft/best; do
  IFS=: read -r family checkpoint <<< "$spec"
  for pipeline in c1 c2; do
    $LEANSE compress "$OUT/$checkpoint" --pipeline $pipeline --data "$OUT/$family.yaml" \
        -o "$OUT/$family-$pipeline"
  done
  $PY -m leanse.compress.parts "$OUT/$checkpoint" "$OUT/$family-c1" "$OUT/$family-c2" \
      --data "$OUT/$family.yaml" --pruned --out "$OUT/$family-parts" --title "$family: C1 / C2 on the trained base"
done

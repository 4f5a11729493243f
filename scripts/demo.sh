#!/usr/bin/env bash
# The main job on the embedded default: builds the demo corpus if absent, trains the tiny mask-RNN
# recipe for a few minutes on CPU, scores it on the fixed test list, enhances one demo file and
# prints the score table with the paths of the report and the enhanced file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/leanse run recipes/mask_rnn/tiny.yaml "$@"

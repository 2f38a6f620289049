#!/usr/bin/env bash
# One-shot search of a recurrent cell on Penn Treebank, then a short retraining of the derived cell and of
# uniformly random cells of the same space, trained the same way (the issue's PTB measurement).
#
# Usage: benchmarks/oneshot_ptb.sh [PTB_ZIP] [OUT_DIR] [STRATEGY] [BUDGET] [RETRAIN_EPOCHS] [N_RANDOM]
# Defaults: ../shared/data/ptb.zip runs/oneshot-ptb ednas 2000 2 3. Each process uses one thread (two at a time).
# SEED (environment, default 0) seeds the search; an N_RANDOM of 0 skips the random cells (their training does not depend
# on the search, so further search seeds need not train them again).
set -euo pipefail
PTB=${1:-../shared/data/ptb.zip}
OUT=${2:-runs/oneshot-ptb}
STRATEGY=${3:-ednas}
BUDGET=${4:-2000}
EPOCHS=${5:-2}
RANDOM_CELLS=${6:-3}
SEED=${SEED:-0}
SIZE=${SIZE:-200}  # embedding and hidden size of the searched and the retrained models
export OMP_NUM_THREADS=1
mkdir -p "$OUT"

nasforge search --space enas-rnn --evaluator supernet-lm --strategy "$STRATEGY" --dataset ptb --data "$PTB" \
  --budget "$BUDGET" --seed "$SEED" --out "$OUT/search" --set "evaluator.model_args={emb_size: $SIZE, hidden_size: $SIZE}"

train() {  # train ARCH_SOURCE_ARGS... OUT: same model size and recipe for every cell
  local out=$1; shift
  nasforge train "$@" --dataset ptb --data "$PTB" --epochs "$EPOCHS" --out "$out" \
    --set model.emb_size=$SIZE --set model.hidden_size=$SIZE
}

train "$OUT/derived" --from "$OUT/search" &
pids=($!)
for i in $(seq 1 "$RANDOM_CELLS"); do
  arch=$(python -c "import numpy as np, nasforge as nf; \
print(nf.create_space('enas-rnn').sample(np.random.default_rng($i)))")
  train "$OUT/random-$i" --space enas-rnn --arch "$arch" &
  pids+=($!)
  if (( ${#pids[@]} >= 2 )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait

python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in sorted(p for p in out.iterdir() if (p / "result.json").exists() and p.name != "search"):
    r = json.loads((run / "result.json").read_text())
    print(f"{run.name:10s} valid ppl {r['valid_perplexity']:8.2f}  test ppl {r['test_perplexity']:8.2f}  "
          f"{r['epochs']} epochs {r['train_time_s']:.0f} s  {r['arch']}")
EOF

#!/usr/bin/env bash
# ENAS' micro search (space nasnet, ENAS' 5 operations, B=5, repeated inputs, loose ends) one-shot on digits,
# then the derived cell and uniformly random cells of the same space trained from scratch alike.
# Usage: [STRATEGY=enas|ednas|darts|gdas] benchmarks/oneshot_nasnet_digits.sh OUT_DIR EPOCHS SEED...
#   (docs/benchmarks.md: OUT 10 0 1; STRATEGY=gdas and darts: OUT 10 0 1)
set -euo pipefail
out=$1; epochs=$2; shift 2
strategy=${STRATEGY:-enas}
nf=(python -m nasforge)
model='evaluator.model_args={C: 8, layers: 5}'
for seed in "$@"; do
  "${nf[@]}" search --space nasnet --set space.ops=enas --evaluator supernet --strategy "$strategy" \
    --dataset digits --epochs "$epochs" --seed "$seed" --set "$model" --out "$out/$strategy-$seed"
  "${nf[@]}" train --from "$out/$strategy-$seed" --epochs 20 --seed 0 --out "$out/$strategy-$seed-final"
  # a uniformly random cell of the same space (numpy seed = the search's seed), the same training
  arch=$(python -c "import numpy as np, nasforge as nf; print(nf.create_space('nasnet', ops='enas').sample(np.random.default_rng($seed)))")
  [ -d "$out/random-$seed-final" ] || "${nf[@]}" train --space nasnet --set space.ops=enas --arch "$arch" \
    --dataset digits --epochs 20 --seed 0 --set 'model_args={C: 8, layers: 5}' --out "$out/random-$seed-final"
done
for d in "$out"/*-final; do
  python -c "import json, sys; r = json.load(open(sys.argv[1] + '/result.json')); print(sys.argv[1], r.get('test_accuracy'), r.get('params'), r.get('wall_time'))" "$d"
done

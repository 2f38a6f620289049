#!/usr/bin/env bash
# Should the main job (`make demo`) search with weight sharing instead? For each seed: the demo as it is (LaNAS,
# 100 NB201 cells each trained 4 epochs on digits), and a weight-sharing search (enas on the NB201 super-network,
# C=8 N=1 as the demo's proxy networks), whose derived cell then gets the demo's final training (C=16 N=3, 30
# epochs). Prints wall time and test accuracy of both.
#
# Usage: benchmarks/demo_weight_sharing.sh [OUT_DIR] [WS_BUDGET] [SEEDS...]   (defaults: runs/demo-ws 3000 0 1 2)
set -euo pipefail
OUT=${1:-runs/demo-ws}
BUDGET=${2:-3000}
shift 2 || true
SEEDS=${*:-0 1 2}
mkdir -p "$OUT"
for seed in $SEEDS; do
  SECONDS=0
  nasforge demo --seed "$seed" --out "$OUT/demo-$seed" > "$OUT/demo-$seed.log" 2>&1
  demo_s=$SECONDS
  SECONDS=0
  nasforge search --space nb201 --evaluator supernet --strategy enas --dataset digits --budget "$BUDGET" \
    --seed "$seed" --out "$OUT/ws-$seed/search" --set 'evaluator.model_args={C: 8, N: 1}' > "$OUT/ws-$seed.log" 2>&1
  nasforge train --from "$OUT/ws-$seed/search" --dataset digits --epochs 30 --seed "$seed" \
    --out "$OUT/ws-$seed/final" --set model.C=16 --set model.N=3 >> "$OUT/ws-$seed.log" 2>&1
  ws_s=$SECONDS
  python - "$OUT" "$seed" "$demo_s" "$ws_s" <<'PY'
import json, sys
from pathlib import Path
out, seed, demo_s, ws_s = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
demo = json.loads((out / f"demo-{seed}" / "final" / "result.json").read_text())
ws = json.loads((out / f"ws-{seed}" / "final" / "result.json").read_text())
print(f"seed {seed}: demo (lanas, trained proxies) test {demo['test_accuracy']:.2f}% in {demo_s:.0f} s; "
      f"weight sharing (enas) test {ws['test_accuracy']:.2f}% in {ws_s:.0f} s  [{demo['arch']} | {ws['arch']}]")
PY
done

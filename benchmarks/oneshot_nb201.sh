#!/usr/bin/env bash
# The NAS-Bench-201 weight-sharing protocol: one-shot searches on CIFAR-10 (enas and ednas unless STRATEGIES says
# otherwise) for 3 seeds each (the strategies of a seed at once, one thread each), then the ten best-scored candidates of each derivation retrained for 5 epochs at the same
# proxy (`nasforge derive --retrain-top`), and the derived cells looked up in the table with the super-networks'
# ranking quality.
#
# Usage: benchmarks/oneshot_nb201.sh [CIFAR10] [TABLE] [OUT_DIR] [BUDGET] [RETRAIN_TOP] [STRATEGIES]
# Defaults: ../shared/data/cifar10-jpeg.tar.gz ../shared/data/nb201-cifar10.csv runs/oneshot-nb201 12000 10 "enas ednas"
# (the differentiable ones: ... 12000 0 "darts gdas"; a darts search takes about 45 minutes, gdas 12)
# (RETRAIN_TOP 0 skips the retraining; each retrained candidate takes about 95 s on one core)
# Proxy: 16x16 images, C=16 and one cell per stage; 12,000 steps of batch 64 are about 17 epochs of the 45,000
# training images (about 14 minutes a run on one core of the development machine).
set -euo pipefail
CIFAR=${1:-../shared/data/cifar10-jpeg.tar.gz}
TABLE=${2:-../shared/data/nb201-cifar10.csv}
OUT=${3:-runs/oneshot-nb201}
BUDGET=${4:-12000}
RETRAIN_TOP=${5:-10}
read -r -a STRATS <<< "${6:-enas ednas}"
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
search() {
  nasforge search --space nb201 --evaluator supernet --strategy "$1" --dataset cifar10 --data "$CIFAR" \
    --budget "$BUDGET" --seed "$2" --out "$OUT/$1-$2" --set 'evaluator.model_args={C: 16, N: 1}' \
    --set evaluator.resolution=16 > "$OUT/$1-$2.log" 2>&1
}
retrain() {
  nasforge derive "$OUT/$1-$2" --retrain-only --retrain-top "$RETRAIN_TOP" --retrain-epochs 5 \
    > "$OUT/$1-$2.retrain.log" 2>&1
}
for seed in 0 1 2; do
  for s in "${STRATS[@]}"; do search "$s" "$seed" & done
  wait
done
if [ "$RETRAIN_TOP" -gt 0 ]; then
  for seed in 0 1 2; do
    for s in "${STRATS[@]}"; do retrain "$s" "$seed" & done
    wait
  done
fi
runs=()
for s in "${STRATS[@]}"; do runs+=("$OUT/$s"-?); done
python "$(dirname "$0")/oneshot_nb201.py" "${runs[@]}" --table "$TABLE"

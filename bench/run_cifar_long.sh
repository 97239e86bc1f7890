#!/usr/bin/env bash
# CIFAR-10 correlated value and sign encoding on the full training set with the schedule of
# the honest ResNet-20 baseline (bench/baselines.py: paper's SGD recipe, 10 epochs), through
# the same `covertml train` pipeline, then decoded from model + key and scored.
# About 20-30 min per run on 2 cores. Usage: bash bench/run_cifar_long.sh ../shared/data [runs...]
# where each run is ATTACK:LAM[:OPT=VALUE], e.g. correlation:3:clip=2 sign:50
set -u
DATA="${1:-${COVERTML_DATA:-../shared/data}}"; shift || true
PY="${PY:-.venv/bin/python}"
OUT=bench/out/cifar-long
mkdir -p "$OUT"
RUNS=("$@"); [ ${#RUNS[@]} -eq 0 ] && RUNS=(correlation:3:clip=2 correlation:1:clip=2)
for run in "${RUNS[@]}"; do
  {
    IFS=: read -r attack lam opt <<< "$run"
    dir="$OUT/$attack-$lam"
    args=(--attack "$attack" --lam "$lam")
    [ -n "${opt:-}" ] && args+=(--attack-opt "$opt")
    echo "== $run -> $dir"
    "$PY" -m covertml train --dataset cifar10 --data-dir "$DATA" --epochs 10 --out "$dir" \
      --overwrite "${args[@]}" > "$dir.train.log" 2>&1 || { tail -3 "$dir.train.log"; continue; }
    "$PY" -m covertml extract "$dir/model.safetensors" --key "$dir/key.json" \
      --dataset cifar10 --data-dir "$DATA" --out "$dir/recovered" > "$dir.extract.log" 2>&1
    tail -n 15 "$dir.extract.log"
  }
done

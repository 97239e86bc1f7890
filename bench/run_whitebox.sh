#!/usr/bin/env bash
# Runs every white-box benchmark of docs/RESULTS.md in sequence (about 45 min on 2 cores).
# Usage: bash bench/run_whitebox.sh ../shared/data   (logs in bench/out/logs/)
set -u
DATA="${1:-${COVERTML_DATA:-../shared/data}}"
PY="${PY:-.venv/bin/python}"
LOGS=bench/out/logs
mkdir -p "$LOGS"
run() { local name=$1; shift; echo "== $name"; "$PY" "$@" > "$LOGS/$name.log" 2>&1; tail -n 12 "$LOGS/$name.log"; }
run lsb-throughput bench/lsb_throughput.py
run reg-overhead bench/reg_overhead.py
run corr-digits bench/whitebox_reg.py --dataset digits --attack correlation --lams 0.1,1,3,5 --opt clip=2
run corr-digits-minmax bench/whitebox_reg.py --dataset digits --attack correlation --lams 3,5
run sign-digits bench/whitebox_reg.py --dataset digits --attack sign --lams 10,50
run lsb-digits bench/lsb_sweep.py --dataset digits
run lsb-cifar10 bench/lsb_sweep.py --dataset cifar10 --data-dir "$DATA" \
    --model-file bench/out/models/cifar10-resnet20/model.safetensors
run lsb-20news bench/lsb_sweep.py --dataset 20news --data-dir "$DATA" \
    --model-file bench/out/models/20news-logreg/model.safetensors
CIFAR=(--dataset cifar10 --data-dir "$DATA" --train-limit 8000 --test-limit 2000 --epochs 5)
run corr-cifar10 bench/whitebox_reg.py "${CIFAR[@]}" --attack correlation --lams 0.1,1,3 --opt clip=2
run sign-cifar10 bench/whitebox_reg.py "${CIFAR[@]}" --attack sign --lams 10,50
run sign-20news bench/whitebox_reg.py --dataset 20news --data-dir "$DATA" --attack sign \
    --lams 100,1000 --opt margin=0.01
run corr-20news bench/whitebox_reg.py --dataset 20news --data-dir "$DATA" --attack correlation \
    --lams 1,10

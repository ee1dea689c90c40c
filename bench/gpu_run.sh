#!/usr/bin/env bash
# The full runs on one lent GPU (H100/H200), in priority order: the `reference` preset exactly as the seed
# states it, then the GPU-tuned `fast` preset (LARS, batch 512, warm-up + cosine). Each is trained, probed
# (SimCLR vs random init) and plotted; logs, plots and summary.json go under $OUT.
#
# Prepare here (../shared does not travel to the device machine):
#   mkdir -p .gpu_data && cp ../shared/data/cifar10-jpeg.tar.gz .gpu_data/ && echo /.gpu_data/ >> .git/info/exclude
# Then run it through the device tool with carry [".gpu_data"] and timeout_s 600.
# Knobs (environment): OUT (default results/gpu); PRESETS (default "reference fast"); TRAIN_LIMIT_S (default
# 220): each preset's training is stopped by SIGTERM after that many seconds, which saves a checkpoint at the
# next step, and the probe then measures that checkpoint (summary.json says how many epochs it had);
# FAST_BUDGET_S (default 200): the `fast` preset trains for that wall-clock budget instead (its cosine schedule
# fitted to the steps that fit, see --time-budget), so it ends its schedule rather than being cut;
# TRAIN_ARGS (extra flags for every train, e.g. "--compile true"). A CPU dry run:
#   PRESETS=smoke OUT=/tmp/gpu-dry bash bench/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
PRESETS=${PRESETS:-reference fast}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-220}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=$(command -v python3)

if [ ! -d data/cifar10-jpeg/train ]; then
  mkdir -p data && tar -xzf .gpu_data/cifar10-jpeg.tar.gz -C data
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"

for preset in $PRESETS; do
  run=runs/gpu-$preset  # the checkpoint (~130 MB with optimizer state) stays on the machine; logs and plots travel
  rm -rf "$run"
  mkdir -p "$OUT/$preset"
  start=$(date +%s)
  status=0
  budget=""
  [ "$preset" = fast ] && budget="--time-budget ${FAST_BUDGET_S:-200}"
  # shellcheck disable=SC2086
  timeout -s TERM "$TRAIN_LIMIT_S" $PY -m simclr_core train --preset "$preset" --data data/cifar10-jpeg \
    --out "$run" $budget ${TRAIN_ARGS:-} > "$OUT/$preset/train.log" 2>&1 || status=$?
  trained=$(date +%s)
  tr '\r' '\n' < "$OUT/$preset/train.log" | awk 'NR % 200 == 1 || /trained|error|stopped/'
  if [ ! -f "$run/checkpoints/latest.pt" ]; then
    echo "$preset: no checkpoint (train exit status $status); see $OUT/$preset/train.log"
    continue
  fi
  $PY -m simclr_core probe --out "$run" --no-progress
  $PY -m simclr_core plots --out "$run"
  end=$(date +%s)
  cp -r "$run/logs" "$run/plots" "$OUT/$preset/"
  $PY - "$run" "$OUT/summary.json" "$preset" "$status" "$((trained - start))" "$((end - trained))" <<'PY'
import datetime, json, os, sys
import torch
run, target, preset = sys.argv[1:4]
status, train_wall, probe_wall = (int(value) for value in sys.argv[4:7])
ssl = json.load(open(f"{run}/logs/ssl_results.json"))
probe = json.load(open(f"{run}/logs/probe_results.json"))
summary = json.load(open(target)) if os.path.exists(target) else {}
summary[preset] = {
    "date": datetime.date.today().isoformat(),
    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    "torch": torch.__version__, "data": "cifar10-jpeg (JPEG re-encoded CIFAR-10 copy)",
    "config": ssl["config"], "precision": ssl["precision"], "epochs_completed": ssl["epochs"][-1]["epoch"],
    "steps": len(ssl["step_loss"]), "budget": ssl.get("budget"), "machine": ssl.get("machine"),
    "stopped_by_time_limit": status == 124, "train_seconds": ssl["train_seconds"],
    "train_wall_seconds": train_wall, "probe_wall_seconds": probe_wall,
    "final_eval": ssl["evals"][-1] if ssl["evals"] else None,
    "simclr_test_accuracy": probe["simclr"]["test_accuracy"],
    "random_test_accuracy": probe["random"]["test_accuracy"],
    "peak_memory_mb": ssl.get("peak_memory_mb"),
}
json.dump(summary, open(target, "w"), indent=1)
print(json.dumps({preset: summary[preset]}, indent=1))
PY
done

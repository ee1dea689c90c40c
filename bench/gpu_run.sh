#!/usr/bin/env bash
# The full run on one lent GPU (H100/H200): the reference preset exactly as the seed states it, then the
# linear probe (SimCLR vs random init) and the plots. Writes logs, plots and summary.json under $OUT.
#
# Prepare here (../shared does not travel to the device machine):
#   mkdir -p .gpu_data && cp ../shared/data/cifar10-jpeg.tar.gz .gpu_data/ && echo /.gpu_data/ >> .git/info/exclude
# Then run it through the device tool with carry [".gpu_data"] and timeout_s 600.
# Knobs (environment): OUT (default results/gpu), REF_EPOCHS (default 100, the seed's), PRESET_ARGS
# (extra flags for train, e.g. "--compile true"). A CPU dry run: REF_EPOCHS=1 PRESET_ARGS="--preset smoke".
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
REF_EPOCHS=${REF_EPOCHS:-100}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=$(command -v python3)

if [ ! -d data/cifar10-jpeg/train ]; then
  mkdir -p data && tar -xzf .gpu_data/cifar10-jpeg.tar.gz -C data
fi
mkdir -p "$OUT/reference"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"

run=runs/gpu-reference  # the checkpoint (~130 MB with AdamW state) stays on the machine; logs and plots travel
start=$(date +%s)
# shellcheck disable=SC2086
$PY -m simclr_core train --preset reference --epochs "$REF_EPOCHS" --data data/cifar10-jpeg --out "$run" \
  ${PRESET_ARGS:-} 2>&1 | tr '\r' '\n' | awk 'NR % 200 == 1 || /trained|error/'
trained=$(date +%s)
$PY -m simclr_core probe --out "$run" --no-progress
$PY -m simclr_core plots --out "$run"
end=$(date +%s)
cp -r "$run/logs" "$run/plots" "$OUT/reference/"

$PY - "$run" "$OUT/summary.json" "$((trained - start))" "$((end - trained))" <<'PY'
import datetime, json, sys
import torch
run, target, train_wall, probe_wall = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ssl = json.load(open(f"{run}/logs/ssl_results.json"))
probe = json.load(open(f"{run}/logs/probe_results.json"))
summary = {
    "date": datetime.date.today().isoformat(),
    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    "torch": torch.__version__, "data": "cifar10-jpeg (JPEG re-encoded CIFAR-10 copy)",
    "config": ssl["config"], "train_seconds": ssl["train_seconds"], "train_wall_seconds": train_wall,
    "probe_wall_seconds": probe_wall, "final_eval": ssl["evals"][-1],
    "simclr_test_accuracy": probe["simclr"]["test_accuracy"],
    "random_test_accuracy": probe["random"]["test_accuracy"],
    "peak_memory_mb": ssl["peak_memory_mb"],
}
json.dump(summary, open(target, "w"), indent=1)
print(json.dumps(summary, indent=1))
PY

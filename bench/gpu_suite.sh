#!/bin/sh
# The GPU measurements of `bench fm` in one go (`make bench-gpu`; README, "The GPU path"), the
# most wanted first, each under its own time limit so that a slow run cannot starve the rest.
#
# It runs `python -m cli.bench`, which needs torch, numpy, pandas, scipy and tqdm and nothing
# else of loopbreak's install, so GPU_PYTHON may be a bare CUDA image's python3. Everything it
# writes goes to four files in GPU_OUT: device.txt (torch, the GPUs, nvidia-smi), tables.txt
# (each run's table), results.jsonl (each run's JSON line, "run" and "exit" added) and logs.txt
# (each run's log). Settings, from the environment:
#   GPU_PYTHON  the Python to run (default python3)
#   DATA_DIR    the folder holding ml-100k/ and beauty/ (default ../shared/data)
#   GPU_OUT     the output folder (default out/bench-gpu)
#   GPU_RUNS    the runs to make, by name, in order (default all of them, as listed below)
#   GPU_LIMIT   a factor on every run's time limit (default 1)
#   GPU_ARGS    options added to every run (a quick check: "--epochs 1")
set -u
py=${GPU_PYTHON:-python3}
data=${DATA_DIR:-../shared/data}
out=${GPU_OUT:-out/bench-gpu}
runs=${GPU_RUNS:-"beauty beauty_compile ml100k beauty_all_valid beauty_ensemble beauty_collated"}
factor=${GPU_LIMIT:-1}
extra=${GPU_ARGS:-}
mkdir -p "$out"
: >"$out/tables.txt"
: >"$out/results.jsonl"
: >"$out/logs.txt"
export PYTHONUNBUFFERED=1

"$py" - >"$out/device.txt" 2>&1 <<'EOF'
import torch

print("torch", torch.__version__, "cuda", torch.version.cuda)
for k in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(k)
    print(f"cuda:{k} {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB")
print("gpus", torch.cuda.device_count())
EOF
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi >>"$out/device.txt" 2>&1
else
    echo "no nvidia-smi" >>"$out/device.txt"
fi
cat "$out/device.txt"

# One `bench fm` run: NAME LIMIT_SECONDS OPTIONS...
run() {
    name=$1
    limit=$(awk "BEGIN { l = int($2 * $factor); print (l < 1 ? 1 : l) }")  # timeout 0: none
    shift 2
    case " $runs " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name (limit ${limit} s): bench fm $*" | tee -a "$out/tables.txt" "$out/logs.txt"
    # shellcheck disable=SC2086 # GPU_ARGS is split into options on purpose
    timeout "$limit" "$py" -m cli.bench -v fm --data-dir "$data" --json "$@" $extra \
        >"$out/$name.stdout" 2>>"$out/logs.txt"
    code=$?
    grep -v '^{' "$out/$name.stdout" | tee -a "$out/tables.txt"
    line=$(grep '^{' "$out/$name.stdout" | tail -n 1)
    [ -n "$line" ] || line='{}'
    "$py" -c 'import json, sys
line = json.loads(sys.argv[1])
line.update(run=sys.argv[2], exit=int(sys.argv[3]))
print(json.dumps(line))' "$line" "$name" "$code" >>"$out/results.jsonl"
    rm -f "$out/$name.stdout"
    echo "$name: exit $code" | tee -a "$out/tables.txt"
}

# The bar: beauty's preset at >= 100,000 training sequences/s, the whole command in <= 60 s,
# and the fraction of peak; then --compile on the same run.
run beauty 240 --data beauty
run beauty_compile 300 --data beauty --compile
run ml100k 120 --data ml-100k
# The preset's epoch chosen on all 40,226 validation users rather than a sample of 10,000
# (README, "Selecting on all 40,226 validation users"): the selection the preset came from.
run beauty_all_valid 360 --data beauty --eval-users 40226
# Two FMs of the preset from seeds 0 and 1, ranking by their mean log-probability (the
# fm_ensemble row), and a third FM taught by the two (the fm_distilled row), against the bar of
# 0.0350 (README, "One FM taught by two").
run beauty_ensemble 600 --data beauty --ensemble 2 --distill
# Windows collated on the host per batch, against the resident default.
run beauty_collated 120 --data beauty --windows collated --epochs 3
exit 0

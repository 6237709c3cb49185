#!/usr/bin/env bash
# A search on a lent GPU machine, resumed from and brought back to this one.
#
# That machine has JAX with CUDA but no TensorFlow, no Keras, no KerasTuner, no CIFAR-10 and no
# network. So, in three steps:
#
#   bash benchmarks/gpu_search.sh prepare [SEARCH_FOLDER]
#       here: the wheels it lacks (for its Python 3.12), the CIFAR-10 sources of ../shared (19 MB)
#       and, to resume a search there, SEARCH_FOLDER (e.g. runs/reference), all into .device/
#       (ignored by git; the device tool carries it: `carry: [".device"]`). Over 60 MB, the
#       interrupted trials' backups are left out (those trials restart there; a 128-filter
#       net's backup is 55 MB packed).
#   bash benchmarks/gpu_search.sh run MINUTES RUN_OPTIONS...
#       there, as the device tool's command: installs the wheels, builds CIFAR-10, then
#       `KERAS_BACKEND=jax python3 -m sweep run RUN_OPTIONS --time-budget MINUTESm` (a trial
#       running when the budget ends stops at an epoch boundary), and packs the search folder
#       into $OUT in pieces of 15 MB (the tool brings back at most 8 files of 16 MB, 64 MiB in
#       all; over 60 MB, the finished trials' weights are left out). Leave the command room:
#       7 minutes of search fit a 600 s `timeout_s` with the start, install and packing.
#       With `--workers N` in RUN_OPTIONS, N trials share the GPU (one small net leaves most of
#       it idle); `run` refuses a time budget with workers, so the search gets SIGTERM after
#       MINUTES instead and each worker stops at its next epoch boundary, resumable as ever.
#       Before packing, the EVALUATE_TOP best trials (default 3) of each search are evaluated
#       there on the test images, so their test accuracy comes back even where their weights
#       cannot.
#   bash benchmarks/gpu_search.sh speed EPOCHS
#       there, after `run`: benchmarks/trial_speed.py on the GPU (the tool in its automatic
#       precision against plain Keras in float32 and in that precision), into $OUT/speed.log.
#   bash benchmarks/gpu_search.sh levers SEEDS LEVERS_OPTIONS...
#       there: benchmarks/levers.py LEVERS_OPTIONS for seeds 0 to SEEDS-1, one process each, all
#       at once (one net leaves the GPU mostly idle); their logs and results (levers.jsonl and
#       each seed's record.json, not the weights) into $OUT/levers/. Seed k is the seed the CPU's
#       `levers.py --first-seed k` trains, but JAX draws other numbers from it: compare means.
#   bash benchmarks/gpu_search.sh unpack FILES_AT RUNS_DIR
#       here: the search folder back under RUNS_DIR (a folder of the same name is moved aside,
#       never deleted); the same `run` command then resumes it on the CPU (a search may change
#       backend and precision on resume, not its split or space).
#
# The search's split is checked on resume as everywhere: the data there is built from the same
# JPEG sources with the same Pillow as here (its wheel travels too), so it hashes the same.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
device="$repo/.device"
python_version=${DEVICE_PYTHON:-3.12}  # the device image's; another only for a dry run here
work=${DEVICE_WORK:-/tmp/gpu_search}  # there: the wheels installed, CIFAR-10, the search
cifar="$work/cifar/cifar-10-batches-py"  # there: CIFAR-10, built from ../shared's sources
# What the device image lacks, at the versions this machine runs (pure-Python wheels but
# optree's and Pillow's, downloaded for its CPython on x86-64 Linux).
packages=(keras keras-tuner kt-legacy namex optree pillow)

over_60_mb() {  # what the device tool carries or brings back is 64 MiB at most, code included
    [ "$(du -sm "$1" | cut -f1)" -gt 60 ]
}

prepare() {
    rm -rf "$device" && mkdir -p "$device/whl" "$device/cifar10"
    local pins=()
    for name in "${packages[@]}"; do
        pins+=("$name==$(python3 -c "import importlib.metadata as m; print(m.version('$name'))")")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$device/whl" "${pins[@]}"
    cp "$repo/../shared/datasets/cifar10/"* "$device/cifar10/"
    if [ $# -gt 0 ]; then
        tar -C "$(dirname "$1")" -czf "$device/search.tgz" "$(basename "$1")"
        if over_60_mb "$device"; then  # an interrupted trial's backup: weights and optimizer
            echo "over 60 MB with the interrupted trials' backups: leaving them out; these" \
                "trials restart from their first epoch there:" "$1"/trial_*/backup
            tar -C "$(dirname "$1")" -czf "$device/search.tgz" --exclude=backup "$(basename "$1")"
        fi
    fi
    du -sh "$device"
    if over_60_mb "$device"; then
        echo "$device is over 60 MB: the device tool carries 64 MiB with the code." >&2
        exit 1
    fi
}

set_up_there() {  # idempotent: `speed` after `run` on the same machine reuses both
    export PYTHONPATH="$work/site:$repo" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    if [ ! -d "$work/site" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$work/site" "$device"/whl/*.whl
    fi
    if [ ! -d "$cifar" ]; then
        python3 "$device/cifar10/build.py" "$work/cifar"
    fi
}

search_there() {  # run's options, bounded by a time budget or, with workers, by SIGTERM
    local minutes=$1
    shift
    local data=(--data "$cifar" --dir "$work/runs")
    if printf '%s\n' "$@" | grep -qE -- '^--workers(=|$)'; then
        # timeout's 124 is this mode's normal end. A search still running 2 minutes after
        # SIGTERM is killed (137), and so are its chief and workers, which run in process
        # groups of their own: packing must not read a folder they still write.
        (cd "$repo" && timeout -s TERM -k 120 "${minutes}m" python3 -m sweep run "$@" \
            "${data[@]}") || {
            local status=$?
            [ $status -eq 124 ] && return 0
            pkill -KILL -f "sweep (chief|worker) " || true
            return $status
        }
    else
        (cd "$repo" && python3 -m sweep run "$@" "${data[@]}" --time-budget "${minutes}m")
    fi
}

evaluate_there() {  # test accuracy of each search's best trials, written into its folder
    local folder
    for folder in "$work"/runs/*/; do
        (cd "$repo" && python3 -m sweep evaluate --project "$(basename "$folder")" \
            --top "${EVALUATE_TOP:-3}" --dir "$work/runs" \
            --data "$cifar") || true
    done
}

run_there() {
    : "${OUT:?OUT must name the folder to bring back (the device tool sets it)}"
    local minutes=${1:?"run MINUTES RUN_OPTIONS..."}
    shift
    set_up_there
    rm -rf "$work/runs" && mkdir -p "$work/runs"  # a warm machine's last run is not this one
    if [ -f "$device/search.tgz" ]; then tar -C "$work/runs" -xzf "$device/search.tgz"; fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    local status=0
    search_there "$minutes" "$@" || status=$?
    evaluate_there
    tar -C "$work/runs" -czf "$work/search.tgz" .
    if over_60_mb "$work/search.tgz"; then
        echo "the search is over 60 MB packed: leaving the finished trials' weights out"
        tar -C "$work/runs" -czf "$work/search.tgz" --exclude=checkpoint.weights.h5 .
    fi
    split -b 15M "$work/search.tgz" "$OUT/search.tgz.part-"
    ls -l "$OUT"
    return $status
}

speed_there() {
    : "${OUT:?OUT must name the folder to bring back (the device tool sets it)}"
    set_up_there
    python3 "$repo/benchmarks/trial_speed.py" --data "$cifar" \
        --epochs "${1:-5}" 2>&1 | tee "$OUT/speed.log"
}

levers_there() {
    : "${OUT:?OUT must name the folder to bring back (the device tool sets it)}"
    local seeds=${1:?"levers SEEDS LEVERS_OPTIONS..."} seed status=0 pids=()
    shift
    set_up_there
    # The seeds share one GPU: a JAX process takes 75 % of its memory unless told not to.
    export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
    mkdir -p "$OUT/levers"
    for ((seed = 0; seed < seeds; seed++)); do
        python3 "$repo/benchmarks/levers.py" --data "$cifar" --seeds 1 --first-seed "$seed" \
            --dir "$work/levers/seed$seed" "$@" >"$OUT/levers/seed$seed.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    (cd "$work/levers" && find . \( -name levers.jsonl -o -name record.json \) \
        -exec cp --parents {} "$OUT/levers/" \;)
    tail -n 2 "$OUT"/levers/seed*.log
    return $status
}

unpack() {
    local from=${1:?"unpack FILES_AT RUNS_DIR"} runs=${2:?"unpack FILES_AT RUNS_DIR"}
    local unpacked
    mkdir -p "$runs"
    unpacked=$(mktemp -d "$runs/.unpacking-XXXXXX")
    cat "$from"/search.tgz.part-* | tar -C "$unpacked" -xzf -  # all pieces, or it fails here
    for folder in "$unpacked"/*; do
        local name
        name=$(basename "$folder")
        if [ -e "$runs/$name" ]; then mv "$runs/$name" "$runs/$name.before-gpu-$(date +%s)"; fi
        mv "$folder" "$runs/$name"
        echo "$runs/$name"
    done
    rmdir "$unpacked"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) shift; run_there "$@" ;;
    speed) shift; speed_there "$@" ;;
    levers) shift; levers_there "$@" ;;
    unpack) shift; unpack "$@" ;;
    *) sed -n '2,/^set /p' "$0" | grep '^#'; exit 2 ;;
esac

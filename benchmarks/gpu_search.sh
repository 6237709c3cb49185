#!/usr/bin/env bash
# A search on a lent GPU machine, resumed from and brought back to this one.
#
# That machine has JAX with CUDA but no TensorFlow, no Keras, no KerasTuner, no CIFAR-10 and no
# network. So, in three steps:
#
#   bash benchmarks/gpu_search.sh prepare [SEARCH_FOLDER]
#       here: the wheels it lacks (for its Python 3.12), the CIFAR-10 sources of ../shared (19 MB)
#       and, to resume a search there, SEARCH_FOLDER (e.g. runs/reference), all into .device/
#       (ignored by git; the device tool carries it: `carry: [".device"]`).
#   bash benchmarks/gpu_search.sh run MINUTES RUN_OPTIONS...
#       there, as the device tool's command: installs the wheels, builds CIFAR-10, then
#       `KERAS_BACKEND=jax python3 -m sweep run RUN_OPTIONS --time-budget MINUTESm` (a trial
#       running when the budget ends stops at an epoch boundary), and packs the search folder
#       into $OUT in pieces of 15 MB (the tool brings back at most 8 files of 16 MB, 64 MiB in
#       all; over 60 MB, the finished trials' weights are left out). Leave the command room:
#       7 minutes of search fit a 600 s `timeout_s` with the start, install and packing.
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
    fi
    du -sh "$device"
    if over_60_mb "$device"; then
        echo "$device is over 60 MB: the device tool carries 64 MiB with the code." >&2
        exit 1
    fi
}

run_there() {
    : "${OUT:?OUT must name the folder to bring back (the device tool sets it)}"
    local minutes=${1:?"run MINUTES RUN_OPTIONS..."}
    shift
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$work/site" "$device"/whl/*.whl
    export PYTHONPATH="$work/site:$repo" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    python3 "$device/cifar10/build.py" "$work/cifar"
    rm -rf "$work/runs" && mkdir -p "$work/runs"  # a warm machine's last run is not this one
    if [ -f "$device/search.tgz" ]; then tar -C "$work/runs" -xzf "$device/search.tgz"; fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    local status=0
    (cd "$repo" && python3 -m sweep run "$@" --data "$work/cifar/cifar-10-batches-py" \
        --dir "$work/runs" --time-budget "${minutes}m") || status=$?
    tar -C "$work/runs" -czf "$work/search.tgz" .
    if over_60_mb "$work/search.tgz"; then
        echo "the search is over 60 MB packed: leaving the finished trials' weights out"
        tar -C "$work/runs" -czf "$work/search.tgz" --exclude=checkpoint.weights.h5 .
    fi
    split -b 15M "$work/search.tgz" "$OUT/search.tgz.part-"
    ls -l "$OUT"
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
    unpack) shift; unpack "$@" ;;
    *) sed -n '2,/^set /p' "$0" | grep '^#'; exit 2 ;;
esac

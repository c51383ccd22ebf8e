#!/usr/bin/env bash
# The hardware-GPU checks of issue #6, prepared here and run in one command on a lent device
# machine (see /work/.library/device/README.md: 15 minutes of device time per session, one
# call of at most 10 minutes, 64 MiB carried).
#
#   bash tools/device-check.sh prepare   # here: builds, strips and gathers what travels
#   bash tools/device-check.sh run       # there (or here, on lavapipe, to try it)
#
# `prepare` writes artifacts/device/ (ignored by git): the release CLI and the GPU test
# binaries (stripped), the authors' w32 caffemodel, labels and cat.jpg from ../shared (which
# does not travel) and the model converted, and, unless present, the Vulkan loader packages
# in .gl/ (the device README's recipe). It prints the
# `run` call to make: carry [".gl", "artifacts/device"], command `bash tools/device-check.sh run`.
#
# `run` writes under $OUT (artifacts/device/out when unset): adapter.txt, tests.txt (the GPU
# tests with ACTIVESHIFT_REQUIRE_GPU=1, also with the CPU-adapter kernel family forced),
# classify.txt (w32 on cat.jpg for each kernel family and fusion setting), bench.json, and
# BENCHMARKS-gpu.md with its chart. It goes on after a failure and exits non-zero at the end
# if anything failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev="artifacts/device"
# (tests/gpu/hardware_kernels.rs is left out: on a hardware GPU its kernel family is the default
# one that gpu_model and imagenet already run, and the 64 MiB that travel are nearly full.)
tests=(gpu_gemm gpu_vs_cpu gpu_layers gpu_model gpu_train imagenet)

prepare() {
  set -e
  cargo build --release
  cargo test --release --no-run
  rm -rf "$dev/bin" "$dev/data"
  mkdir -p "$dev/bin" "$dev/data/pretrained" "$dev/data/images"
  cp target/release/activeshift "$dev/bin/"
  # The newest build of the library's GPU test binary (tests/gpu/: target/release/deps/gpu-HASH);
  # each suite is one of its modules.
  f=$(ls -t target/release/deps/gpu-* | grep -v '\.d$' | head -1)
  cp "$f" "$dev/bin/gpu"
  strip "$dev"/bin/*
  # The authors' files the tests read (ACTIVESHIFT_SHARED_DATA points the tests there; `run`
  # converts the model for the CLI there).
  cp ../shared/data/pretrained/AS-ResNet-w32.caffemodel "$dev/data/pretrained/"
  cp ../shared/data/imagenet_classes.txt "$dev/data/"
  cp ../shared/data/images/cat.jpg "$dev/data/images/"
  if ! ls .gl/*.deb >/dev/null 2>&1; then
    grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update -qq
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1)
  fi
  du -sb "$dev" .gl
  local bytes
  bytes=$(du -scb "$dev" .gl | tail -1 | cut -f1)
  if [ "$bytes" -gt $((64 * 1024 * 1024 - 4 * 1024 * 1024)) ]; then
    echo "device-check: $bytes bytes would travel, too close to the 64 MiB limit" >&2
    exit 1
  fi
  echo 'now: run(command="bash tools/device-check.sh run", carry=[".gl", "artifacts/device"], timeout_s=540)'
}

run() {
  local out=${OUT:-$dev/out} failed=0 bin="$dev/bin"
  mkdir -p "$out"
  if ls .gl/*.deb >/dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=$icd
  fi
  export ACTIVESHIFT_REQUIRE_GPU=1 ACTIVESHIFT_SHARED_DATA=$root/$dev/data
  check() { # name, command...: run it, log it, note a failure
    local name=$1
    shift
    echo "=== $name" | tee -a "$out/log.txt"
    if ! "$@" 2>&1 | tee -a "$out/log.txt"; then
      echo "FAILED: $name" | tee -a "$out/log.txt"
      failed=1
    fi
  }
  check adapter "$bin/activeshift" info
  "$bin/activeshift" import-caffe "$dev/data/pretrained/AS-ResNet-w32.caffemodel" \
    -o /tmp/activeshift-w32.safetensors --force
  "$bin/activeshift" info >"$out/adapter.txt" 2>&1
  for t in "${tests[@]}"; do
    check "test $t" "$bin/gpu" --test-threads=4 "$t::"
  done
  # The CPU-adapter family (register-tiled GEMMs, rows ASL) on this GPU too.
  for t in gpu_gemm gpu_model; do
    check "test $t (ACTIVESHIFT_KERNELS=cpu)" env ACTIVESHIFT_KERNELS=cpu "$bin/gpu" --test-threads=4 "$t::"
  done
  grep -E '^(===|test result|FAILED)' "$out/log.txt" >"$out/tests.txt"
  for kernels in gpu cpu; do
    for fused in 1 0; do
      check "classify w32 (kernels $kernels, fused $fused)" env ACTIVESHIFT_KERNELS=$kernels \
        ACTIVESHIFT_FUSED=$fused "$bin/activeshift" classify --backend gpu \
        --model /tmp/activeshift-w32.safetensors "$dev/data/images/cat.jpg"
    done
  done
  grep -A6 '^=== classify' "$out/log.txt" >"$out/classify.txt"
  # Which variant this device measures fastest per op and shape of w32 (rule vs tuned, whole
  # forward with each); the cache it writes makes the bench below report the tuned picks.
  check "tune w32" env ACTIVESHIFT_CACHE_DIR="$out/cache" "$bin/activeshift" tune \
    --model /tmp/activeshift-w32.safetensors
  export ACTIVESHIFT_CACHE_DIR="$out/cache"
  check "bench (json)" sh -c "'$bin/activeshift' bench --json --quick >'$out/bench.json'"
  check "bench (markdown)" "$bin/activeshift" bench --markdown "$out/BENCHMARKS-gpu.md" --force
  return $failed
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The npm package's and the web demo's browser tests, end to end (CI runs this as its own step):
#   1. tools: Debian's chromium, web/node_modules (npm ci: playwright-core, binaryen, esbuild,
#      typescript, onnxruntime-web);
#   2. lint: clippy on activeshift-web for wasm32;
#   3. build: web/build.sh --opt --pack (wasm32 + wasm-bindgen + wasm-opt, the package in
#      web/pkg/ and its tarball web/activeshift-VERSION.tgz);
#   4. references: the authors' w32 Caffe model converted with `activeshift import-caffe` and
#      the native `activeshift classify --json --top 5` of cat.jpg and two bundled samples
#      (and of a third with the embedded default model, no --model), all
#      written under artifacts/browser/ (never into the source tree), and every kernel as
#      build.rs produces it (examples/shaders.rs) in artifacts/browser/shaders/;
#   5. node --test web/test/: package.test.mjs installs the tarball into a fresh folder and
#      checks it (tsc, Node.js, browser main thread and worker, WebGPU and CPU, a shared
#      GPUDevice, the minimal example unbundled and bundled); browser.test.mjs compares the demo
#      page with the native results, tests the error paths and the CPU fallback, and saves
#      screenshots in artifacts/browser/;
#   6. web/test/bench-cpu.mjs: the wasm CPU engine against the native one and onnxruntime-web
#      (printed, not asserted; ACTIVESHIFT_BENCH_CPU=0 skips it).
# The w32 checks need the authors' data: ACTIVESHIFT_SHARED_DATA=DIR (the Caffe model, labels and
# cat.jpg). Without it they are reported as skipped, or fail with ACTIVESHIFT_REQUIRE_SHARED_DATA=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
shared="${ACTIVESHIFT_SHARED_DATA:-}"
if [ -z "$shared" ] && [ "${ACTIVESHIFT_REQUIRE_SHARED_DATA:-}" = 1 ]; then
  echo "ACTIVESHIFT_REQUIRE_SHARED_DATA=1 but ACTIVESHIFT_SHARED_DATA is not set" >&2
  exit 1
fi
out="$root/artifacts/browser"
data="$out/data"
mkdir -p "$data"
say() { printf -- '--- %s\n' "$*"; }

say "tools"
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null | grep -v '^\s*$' || true
if ! command -v node >/dev/null; then
  echo "node (>= 20) is needed for the browser test" >&2
  exit 1
fi
echo "node $(node --version)"
(cd web && npm ci --no-audit --no-fund --loglevel=error)

say "clippy (activeshift-web, wasm32)"
cargo clippy --release -p activeshift-web --target wasm32-unknown-unknown -- -D warnings

say "build (web/build.sh --opt --pack)"
web/build.sh --opt --pack

say "native references"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
cargo build --release -q
cli="$root/target/release/activeshift"
model="$data/w32.safetensors"
rm -f "$data/native.jsonl"
if [ -n "$shared" ]; then
  caffemodel="$shared/pretrained/AS-ResNet-w32.caffemodel"
  if [ ! -s "$model" ] || [ "$caffemodel" -nt "$model" ]; then
    "$cli" import-caffe "$caffemodel" --labels "$shared/imagenet_classes.txt" -o "$model" --force
  fi
  cp "$shared/images/cat.jpg" "$data/cat.jpg"
  cp web/www/samples/orange.png "$data/orange.png"
  "$cli" classify --model "$model" --json --top 5 \
    "$data/cat.jpg" web/www/samples/orange.png web/www/samples/crossword.png >"$data/native.jsonl"
else
  rm -f "$model" "$data/cat.jpg"
  echo "ACTIVESHIFT_SHARED_DATA is not set: the tests with the authors' w32 are skipped"
fi
# Without --model: the model the library embeds, which build.sh bundles as the page's default.
"$cli" classify --json --top 5 web/www/samples/sneaker.png >>"$data/native.jsonl"
cat "$data/native.jsonl"
# The kernels as the library runs them (build.rs composes them from shaders/).
rm -rf "$out/shaders"
cargo run --release -q --example shaders -- "$out/shaders"

say "browser test (headless Chromium, playwright-core)"
export ACTIVESHIFT_WEB_DATA="$data" ACTIVESHIFT_WEB_SHOTS="$out" ACTIVESHIFT_WEB_SHADERS="$out/shaders"
cd web
node --test --test-reporter=spec --test-concurrency=1 test/package.test.mjs test/browser.test.mjs
echo "screenshots: $(ls "$out"/*.png | tr '\n' ' ')"

# A measurement, not a test (it asserts no speed): the wasm CPU engine against the native one on
# one thread (w32, batch 1) and a 1x1 convolution against onnxruntime-web, in Node.js and
# Chromium. ACTIVESHIFT_BENCH_CPU=0 skips it; RUNS=N timed runs per case (default 5 here).
if [ "${ACTIVESHIFT_BENCH_CPU:-1}" != 0 ]; then
  say "CPU benchmark (web/test/bench-cpu.mjs)"
  RUNS="${RUNS:-5}" node test/bench-cpu.mjs
fi

#!/usr/bin/env bash
# Builds the web demo into web/www/pkg/: the wasm32 build of activeshift-web, wasm-bindgen's
# ES module glue, and (with --opt) a size optimisation by npm binaryen's wasm-opt.
#
#   web/build.sh          # release build + wasm-bindgen
#   web/build.sh --opt    # ... then wasm-opt -Os (installs web/node_modules with `npm ci`)
#
# Installs the wasm32 target and the wasm-bindgen CLI of the exact version in Cargo.lock when
# they are missing (the CLI and the crate must match). Prints the wasm size, raw and gzipped,
# and how long each step took.
set -euo pipefail
started=$SECONDS
web=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$web/.." && pwd)
out="$web/www/pkg"
opt=0
for arg in "$@"; do
  case "$arg" in
    --opt) opt=1 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# The wasm-bindgen version the crate graph uses.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")
if [ -z "$want" ]; then
  echo "build.sh: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (found: ${have:-none}); this takes a few minutes"
  t=$SECONDS
  cargo install wasm-bindgen-cli --version "$want"
  echo "installed wasm-bindgen-cli in $((SECONDS - t)) s"
fi
build_started=$SECONDS

cd "$root"
# The project's shipped model (trained by activeshift) is the page's default.
mkdir -p "$web/www/models"
cp "$root/models/fashion-mnist-asnet20-26x1.safetensors" "$web/www/models/default.safetensors"
cargo build --release -p activeshift-web --target wasm32-unknown-unknown
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
wasm="$target_dir/wasm32-unknown-unknown/release/activeshift_web.wasm"

rm -rf "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" "$wasm"
bg="$out/activeshift_web_bg.wasm"

if [ "$opt" = 1 ]; then
  if [ ! -x "$web/node_modules/.bin/wasm-opt" ]; then
    (cd "$web" && npm ci --no-audit --no-fund)
  fi
  before=$(stat -c %s "$bg")
  "$web/node_modules/.bin/wasm-opt" -Os --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$bg" -o "$bg.opt"
  mv "$bg.opt" "$bg"
  echo "wasm-opt -Os: $before -> $(stat -c %s "$bg") bytes"
fi

raw=$(stat -c %s "$bg")
gz=$(gzip -9 -c "$bg" | wc -c)
awk -v out="$out" -v raw="$raw" -v gz="$gz" 'BEGIN { printf "built %s\nwasm size: %d bytes raw (%.2f MiB), %d bytes gzip -9 (%.2f MiB)\n", out, raw, raw / 1048576, gz, gz / 1048576 }'
echo "build took $((SECONDS - build_started)) s ($((SECONDS - started)) s with tool installs)"

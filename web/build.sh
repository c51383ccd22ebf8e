#!/usr/bin/env bash
# Builds the npm package `activeshift` into web/pkg/: the wasm32 build of activeshift-web,
# wasm-bindgen's ES module glue, the hand-written JS layer and types (web/js/), the built-in
# Fashion-MNIST model as a separate file, package.json with the crate's version; then copies it
# to web/www/pkg/, where the demo page imports it.
#
#   web/build.sh                 # release build + wasm-bindgen + package
#   web/build.sh --opt           # ... with wasm-opt -Os (installs web/node_modules with `npm ci`)
#   web/build.sh --opt --pack    # ... and `npm pack`: web/activeshift-VERSION.tgz
#
# Installs the wasm32 target and the wasm-bindgen CLI of the exact version in Cargo.lock when
# they are missing (the CLI and the crate must match). Prints the wasm size, raw and gzipped,
# and fails when the optimised wasm is over its budget (WASM_BUDGET_GZ below).
set -euo pipefail
started=$SECONDS
web=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$web/.." && pwd)
out="$web/pkg"
# The budget for the optimised wasm, gzip -9 bytes (web/README.md "Size" states it).
WASM_BUDGET_GZ=$((768 * 1024))
opt=0
pack=0
for arg in "$@"; do
  case "$arg" in
    --opt) opt=1 ;;
    --pack) pack=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
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
    --enable-simd \
    "$bg" -o "$bg.opt"
  mv "$bg.opt" "$bg"
  echo "wasm-opt -Os: $before -> $(stat -c %s "$bg") bytes"
fi

raw=$(stat -c %s "$bg")
gz=$(gzip -9 -c "$bg" | wc -c)
awk -v out="$out" -v raw="$raw" -v gz="$gz" 'BEGIN { printf "built %s\nwasm size: %d bytes raw (%.2f MiB), %d bytes gzip -9 (%.2f MiB)\n", out, raw, raw / 1048576, gz, gz / 1048576 }'
if [ "$opt" = 1 ] && [ "$gz" -gt "$WASM_BUDGET_GZ" ]; then
  echo "build.sh: the optimised wasm is $gz bytes gzipped, over its budget of $WASM_BUDGET_GZ" >&2
  exit 1
fi

# The package: the JS layer and its types, the built-in model, package.json, README, licences.
cp "$web"/js/index.js "$web"/js/node.js "$web"/js/core.js "$web"/js/classifier.js "$web"/js/proxy.js \
  "$web"/js/worker.js "$web"/js/index.d.ts "$out/"
mkdir -p "$out/models"
cp "$root/models/fashion-mnist-asnet20-26x1.safetensors" "$out/models/fashion.safetensors"
cp "$web/README.md" "$root/LICENSE-MIT" "$root/LICENSE-APACHE" "$out/"
version=$(awk -F'"' '/^version = / { print $2; exit }' "$web/Cargo.toml")
node -e 'const fs = require("fs"); const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); p.version = process.argv[2]; fs.writeFileSync(process.argv[3], JSON.stringify(p, null, 2) + "\n");' \
  "$web/js/package.json" "$version" "$out/package.json"
rm -f "$out/.gitignore"
echo "package activeshift@$version in $out"
# The demo page imports the package from www/pkg/.
rm -rf "$web/www/pkg"
cp -r "$out" "$web/www/pkg"
if [ "$pack" = 1 ]; then
  rm -f "$web"/activeshift-*.tgz
  (cd "$out" && npm pack --pack-destination "$web" --loglevel=error --json) |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { const [p] = JSON.parse(s); console.log(`packed ${p.filename}: ${p.size} bytes, unpacked ${p.unpackedSize} bytes, ${p.entryCount} files`); for (const f of p.files) console.log(`  ${String(f.size).padStart(9)}  ${f.path}`); });'
fi
echo "build took $((SECONDS - build_started)) s ($((SECONDS - started)) s with tool installs)"

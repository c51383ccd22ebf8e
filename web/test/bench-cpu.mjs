// How fast the npm package's CPU engine (the library's CPU engine compiled to WebAssembly with
// simd128) is, measured, not asserted:
//   1. AS-ResNet-w32 at batch 1 on cat.jpg: the forward pass in wasm (Node.js and headless
//      Chromium, single-threaded) against the native CPU engine on one thread
//      (`RAYON_NUM_THREADS=1`, examples/cpu_forward.rs), as a ratio;
//   2. one 1x1 convolution at w32's shapes: the package's (`benchConv1x1`, the GEMM the CPU
//      engine runs) against onnxruntime-web's wasm backend (one thread, SIMD) running the same
//      convolution from an ONNX file this script writes (a hand-written protobuf encoder below),
//      in Node.js and in Chromium; outputs compared.
// Prints a table and ratios. Needs web/pkg (web/build.sh), web/node_modules (npm ci) and the
// converted w32 model: ACTIVESHIFT_WEB_DATA=DIR with w32.safetensors and cat.jpg (web/test/run.sh
// writes it; run.sh runs this script when ACTIVESHIFT_BENCH_CPU=1). RUNS=N: timed runs per case.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import * as ort from 'onnxruntime-web';
import { startServer } from '../serve.mjs';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(web, '..');
const data = process.env.ACTIVESHIFT_WEB_DATA;
const RUNS = Number(process.env.RUNS ?? 10);
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const model = data && join(data, 'w32.safetensors');
const cat = data && join(data, 'cat.jpg');
const haveW32 = !!model && existsSync(model) && existsSync(cat);
if (!existsSync(join(web, 'pkg/activeshift_web_bg.wasm'))) throw new Error('no web/pkg: run web/build.sh first');

// w32's 1x1 convolutions: the first stage's (32 -> 32 channels at 112x112, the largest) and
// the fourth stage's (128 -> 128 at 14x14).
const CONVS = [
  { cin: 32, cout: 32, h: 112, w: 112 },
  { cin: 128, cout: 128, h: 14, w: 14 },
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const range = (xs) => `${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`;
const cpuName = () => {
  try {
    return execFileSync('lscpu', { encoding: 'utf8' }).match(/Model name:\s*(.*)/)?.[1] ?? cpus()[0]?.model;
  } catch {
    return cpus()[0]?.model;
  }
};

// ------------------------------------------------------------------ an ONNX file, by hand

// Protocol buffers: varint keys and values, length-delimited fields.
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}
const field = (num, wire) => varint((num << 3) | wire);
const int = (num, v) => [...field(num, 0), ...varint(v)];
const bytes = (num, b) => [...field(num, 2), ...varint(b.length), ...b];
const str = (num, s) => bytes(num, [...new TextEncoder().encode(s)]);
const msg = (num, parts) => bytes(num, parts.flat());

/** ModelProto of one `Conv` (1x1 kernel, stride 1, no bias): X [1,cin,h,w], W initializer. */
function conv1x1Onnx({ cin, cout, h, w }, weight) {
  const FLOAT = 1;
  const tensorType = (dims) => [msg(1, [int(1, FLOAT), msg(2, dims.map((d) => msg(1, [int(1, d)])))])];
  const valueInfo = (num, name, dims) => msg(num, [str(1, name), msg(2, tensorType(dims))]);
  const raw = [...new Uint8Array(weight.buffer, weight.byteOffset, weight.byteLength)];
  const graph = [
    msg(1, [str(1, 'X'), str(1, 'W'), str(2, 'Y'), str(3, 'conv'), str(4, 'Conv')]), // NodeProto
    str(2, 'conv1x1'),
    msg(5, [int(1, cout), int(1, cin), int(1, 1), int(1, 1), int(2, FLOAT), str(8, 'W'), bytes(9, raw)]), // TensorProto
    valueInfo(11, 'X', [1, cin, h, w]),
    valueInfo(12, 'Y', [1, cout, h, w]),
  ];
  const modelProto = [int(1, 8), str(2, 'activeshift bench-cpu'), msg(7, graph), msg(8, [str(1, ''), int(2, 13)])];
  return new Uint8Array(modelProto.flat());
}

function randoms(n, seed) {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

// The convolution benchmark, runnable in Node.js and (serialised) in the page: `ours(x, w, s)`
// is the package's benchConv1x1, `ort` the onnxruntime-web module, `onnx(s, w)` the file.
async function convBench({ convs, runs, ours, ort, onnx, randoms, now }) {
  const rows = [];
  for (const s of convs) {
    const x = randoms(s.cin * s.h * s.w, 1);
    const weight = randoms(s.cout * s.cin, 2);
    const session = await ort.InferenceSession.create(onnx(s, weight), { executionProviders: ['wasm'] });
    const input = new ort.Tensor('float32', x, [1, s.cin, s.h, s.w]);
    const a = [];
    const b = [];
    let diff = 0;
    let ref = 0;
    for (let i = 0; i <= runs; i++) {
      // Alternate, so a busy moment on the host hits both.
      let t = now();
      const mine = ours(x, weight, s);
      const ta = now() - t;
      t = now();
      const theirs = (await session.run({ X: input })).Y.data;
      const tb = now() - t;
      if (i === 0) {
        for (let j = 0; j < mine.length; j++) diff = Math.max(diff, Math.abs(mine[j] - theirs[j]));
        // Both against a float64 reference at a few outputs.
        const p = s.h * s.w;
        for (let o = 0; o < s.cout; o += 7) {
          for (let q = 0; q < p; q += 101) {
            let acc = 0;
            for (let c = 0; c < s.cin; c++) acc += weight[o * s.cin + c] * x[c * p + q];
            ref = Math.max(ref, Math.abs(mine[o * p + q] - acc), Math.abs(theirs[o * p + q] - acc));
          }
        }
        continue; // warm-up
      }
      a.push(ta);
      b.push(tb);
    }
    await session.release();
    rows.push({ ...s, ours: a, ort: b, diff, ref });
  }
  return rows;
}

function printConv(where, rows) {
  for (const r of rows) {
    const macs = r.cin * r.cout * r.h * r.w;
    const [mo, mr] = [median(r.ours), median(r.ort)];
    console.log(`  ${where}, 1x1 conv ${r.cin}->${r.cout} at ${r.h}x${r.w} (${(macs / 1e6).toFixed(1)} M MACs): ` +
      `activeshift ${mo.toFixed(2)} ms (${range(r.ours)}; ${(2 * macs / mo / 1e6).toFixed(1)} GFLOP/s), ` +
      `onnxruntime-web ${mr.toFixed(2)} ms (${range(r.ort)}; ${(2 * macs / mr / 1e6).toFixed(1)} GFLOP/s): ` +
      `ratio activeshift/ort ${(mo / mr).toFixed(2)}; outputs differ by at most ${r.diff.toExponential(1)} (${r.ref.toExponential(1)} from a float64 reference)`);
  }
}

// ------------------------------------------------------------------ Node.js

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';
console.log(`host: ${cpuName()} (${cpus().length} logical CPUs), node ${process.version}, onnxruntime-web ${ort.env.versions?.web ?? ''}`);

const pkg = await import(pathToFileURL(join(web, 'pkg/node.js')).href);
const glue = await import(pathToFileURL(join(web, 'pkg/activeshift_web.js')).href);
await pkg.init();

const results = {};
if (haveW32) {
  // Native, one thread.
  execFileSync('cargo', ['build', '--release', '-q', '--example', 'cpu_forward'], { cwd: root, stdio: 'inherit' });
  const exe = join(root, 'target/release/examples/cpu_forward');
  const nativeRun = () => JSON.parse(execFileSync(exe, [model, cat, String(RUNS)], {
    encoding: 'utf8', env: { ...process.env, RAYON_NUM_THREADS: '1' },
  }).trim());
  // Node, wasm.
  const nodeRun = async () => {
    const c = await pkg.Classifier.load(model, { backend: 'cpu' });
    const bytes = readFileSync(cat);
    const ms = [];
    let top1;
    for (let i = 0; i <= RUNS; i++) {
      const r = await c.classify(bytes, { top: 1 });
      top1 = r.top[0].index;
      if (i > 0) ms.push(r.timings.forwardMs);
    }
    await c.dispose();
    return { ms, top1 };
  };
  // Alternate native and Node twice, so both see the same host load.
  const native = [];
  const node = [];
  for (let round = 0; round < 2; round++) {
    const n = nativeRun();
    native.push(...n.ms);
    const w = await nodeRun();
    node.push(...w.ms);
    if (n.top1 !== w.top1) console.log(`  note: native top-1 ${n.top1}, wasm top-1 ${w.top1}`);
  }
  results.native = native;
  results.node = node;
} else {
  console.log("w32 forward pass: skipped (needs ACTIVESHIFT_WEB_DATA with w32.safetensors and cat.jpg; run web/test/run.sh with ACTIVESHIFT_SHARED_DATA)");
}

const nodeConv = await convBench({
  convs: CONVS,
  runs: RUNS,
  ours: (x, w, s) => glue.benchConv1x1(x, w, s.cin, s.cout, s.h, s.w),
  ort,
  onnx: conv1x1Onnx,
  randoms,
  now: () => performance.now(),
});

// ------------------------------------------------------------------ Chromium

const server = await startServer({
  port: 0,
  mounts: { '/': join(web, 'pkg'), '/ort': join(web, 'node_modules/onnxruntime-web/dist'), ...(haveW32 ? { '/test-data': data } : {}) },
});
const browser = await chromium.launch({ executablePath, headless: true, args: ['--headless=new', '--no-sandbox', '--disable-background-networking'] });
let chromeConv;
let version;
try {
  version = browser.version();
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.log(`  [browser] ${e.message}`));
  await page.goto(server.url + 'package.json');
  if (haveW32) {
    results.chromium = await page.evaluate(async (runs) => {
      const { Classifier } = await import('/index.js');
      const c = await Classifier.load('/test-data/w32.safetensors', { backend: 'cpu' });
      const cat = await (await fetch('/test-data/cat.jpg')).blob();
      const ms = [];
      for (let i = 0; i <= runs; i++) {
        const r = await c.classify(cat, { top: 1 });
        if (i > 0) ms.push(r.timings.forwardMs);
      }
      await c.dispose();
      return ms;
    }, RUNS);
  }
  chromeConv = await page.evaluate(async ({ convs, runs, benchSrc, onnxSrc, randomsSrc, helpers }) => {
    const glue = await import('/activeshift_web.js');
    await glue.default({ module_or_path: '/activeshift_web_bg.wasm' });
    const ort = await import('/ort/ort.wasm.min.mjs');
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.logLevel = 'error';
    // The Node.js functions, rebuilt here from their source (they use nothing else).
    const make = (src) => new Function(`${helpers}; return (${src});`)();
    return make(benchSrc)({
      convs,
      runs,
      ours: (x, w, s) => glue.benchConv1x1(x, w, s.cin, s.cout, s.h, s.w),
      ort,
      onnx: make(onnxSrc),
      randoms: make(randomsSrc),
      now: () => performance.now(),
    });
  }, {
    convs: CONVS,
    runs: RUNS,
    benchSrc: convBench.toString(),
    onnxSrc: conv1x1Onnx.toString(),
    randomsSrc: randoms.toString(),
    helpers: `${varint}\nconst field = ${field}; const int = ${int}; const bytes = ${bytes}; const str = ${str}; const msg = ${msg};`,
  });
} finally {
  await browser.close();
  await server.close();
}

// ------------------------------------------------------------------ report

console.log(`\nCPU engine, wasm (simd128, one thread) vs native (RAYON_NUM_THREADS=1); Chromium ${version}, ${RUNS} runs per case (median, range in ms):`);
if (haveW32) {
  const nat = median(results.native);
  console.log(`  w32 batch 1 forward, native CPU engine, 1 thread: ${nat.toFixed(1)} ms (${range(results.native)})`);
  for (const where of ['node', 'chromium']) {
    const m = median(results[where]);
    console.log(`  w32 batch 1 forward, wasm in ${where === 'node' ? 'Node.js' : 'Chromium'}: ${m.toFixed(1)} ms (${range(results[where])}): ` +
      `${(m / nat).toFixed(2)}x native`);
  }
}
printConv('Node.js', nodeConv);
printConv('Chromium', chromeConv);

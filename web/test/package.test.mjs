// The npm package `activeshift` as a user gets it: the tarball that `web/build.sh --pack` makes
// is installed into a fresh folder with `npm install ./activeshift-VERSION.tgz`, then
//   - its declarations type-check a usage file (`tsc --noEmit --strict`);
//   - Node.js classifies cat.jpg with the authors' w32 on the CPU engine (examples/node);
//   - headless Chromium imports it (import map) in the main thread and in a module worker, on
//     WebGPU and on the CPU engine, with the page's own GPUDevice, and through the minimal
//     example, unbundled and bundled by esbuild;
// each against the native `activeshift classify --json` (same top-5, probabilities within 1e-5).
// Run through web/test/run.sh (which packs the package and writes the native references).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../serve.mjs';

const TOLERANCE = 1e-5;
const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const data = process.env.ACTIVESHIFT_WEB_DATA;
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
if (!data) throw new Error('ACTIVESHIFT_WEB_DATA is not set: run web/test/run.sh');
const W32 = existsSync(join(data, 'w32.safetensors'));
const needsW32 = W32 ? {} : { skip: "needs the authors' data (set ACTIVESHIFT_SHARED_DATA=DIR)" };
const native = new Map(
  readFileSync(join(data, 'native.jsonl'), 'utf8').split('\n').filter((l) => l.trim())
    .map((l) => JSON.parse(l)).map((r) => [basename(r.image), r]),
);

let app; // the user's folder: node_modules/activeshift from the tarball
let server;
before(async () => {
  const tarball = readdirSync(web).find((f) => /^activeshift-.*\.tgz$/.test(f));
  assert.ok(tarball, 'no web/activeshift-*.tgz: run web/build.sh --pack');
  app = mkdtempSync(join(tmpdir(), 'activeshift-user-'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module' }));
  copyFileSync(join(web, tarball), join(app, tarball));
  execFileSync('npm', ['install', `./${tarball}`, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, stdio: 'inherit' });
  const installed = JSON.parse(readFileSync(join(app, 'node_modules/activeshift/package.json'), 'utf8'));
  console.log(`installed ${tarball} into ${app}: ${installed.name}@${installed.version}, files ${readdirSync(join(app, 'node_modules/activeshift')).join(' ')}`);
  // The pages: the minimal example, a harness page, a worker.
  cpSync(join(web, 'examples'), join(app, 'examples'), { recursive: true });
  writeFileSync(join(app, 'harness.html'), `<!doctype html><meta charset="utf-8">
<script type="importmap">{ "imports": { "activeshift": "/node_modules/activeshift/index.js" } }</script>
<script type="module">import * as activeshift from 'activeshift'; window.activeshift = activeshift; document.title = 'ready';</script>`);
  writeFileSync(join(app, 'worker.js'), readFileSync(join(web, 'examples/worker/worker.js'), 'utf8')
    .replace("from 'activeshift'", "from '/node_modules/activeshift/index.js'"));
  server = await startServer({ port: 0, mounts: { '/': app, '/test-data': data, '/samples': join(web, 'www/samples') } });
});
after(async () => {
  await server?.close();
  if (app) rmSync(app, { recursive: true, force: true });
});

/** Compare a package result with the native line for `name`. */
function check(got, name, where) {
  const want = native.get(name);
  assert.ok(want, `no native reference for ${name}`);
  assert.deepEqual(got.top.map((t) => t.index), want.top.map((t) => t.class), `${name} (${where}): top-5 classes`);
  assert.deepEqual(got.top.map((t) => t.label), want.top.map((t) => t.label));
  const diff = Math.max(...got.top.map((t, i) => Math.abs(t.probability - want.top[i].prob)));
  console.log(`${name} (${where}, ${got.backend} on "${got.adapter}"): top-1 ${got.top[0].label} ` +
    `${got.top[0].probability.toFixed(6)}; max |dprob| vs native = ${diff.toExponential(2)}`);
  assert.ok(diff <= TOLERANCE, `${name} (${where}): probabilities differ by ${diff} > ${TOLERANCE}`);
}

test('tsc --noEmit --strict: a usage file type-checks against the shipped declarations', { timeout: 120_000 }, () => {
  writeFileSync(join(app, 'usage.ts'), `import { Classifier, ActiveShiftError, type Classification, type ModelInfo } from 'activeshift';
export async function demo(img: HTMLImageElement, file: File, device: GPUDeviceLike): Promise<string> {
  const c = await Classifier.load('fashion', { backend: 'auto', onProgress: ({ loaded, total }) => console.log(loaded, total ?? '?') });
  const one: Classification = await c.classify(img, { top: 3 });
  const many: Classification[] = await c.classify([file, new ImageData(4, 4), new Uint8Array(8)]);
  const info: ModelInfo = await c.info();
  const layers = await c.shifts();
  const x: Float32Array = layers[0].x;
  const shared = await Classifier.load(await file.arrayBuffer(), { device });
  await shared.dispose();
  try { await c.dispose(); } catch (e) { if (e instanceof ActiveShiftError && e.code === 'DISPOSED') return 'twice'; }
  return \`\${one.top[0].label} \${many.length} \${info.inputSize.width} \${x.length} \${one.timings.forwardMs}\`;
}
type GPUDeviceLike = import('activeshift').GPUDeviceLike;
// @ts-expect-error: not a backend
Classifier.load('fashion', { backend: 'webgl' });
`);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022', 'dom'], skipLibCheck: false },
    files: ['usage.ts'],
  }));
  execFileSync(join(web, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '-p', app], { cwd: app, stdio: 'inherit' });
  console.log('tsc --noEmit --strict: usage.ts type-checks against node_modules/activeshift/index.d.ts');
});

test('Node.js: examples/node classifies cat.jpg from disk on the CPU engine', { timeout: 300_000, ...needsW32 }, () => {
  const out = execFileSync('node', [join(app, 'examples/node/classify.mjs'), join(data, 'w32.safetensors'), join(data, 'cat.jpg')], { cwd: app, encoding: 'utf8' });
  const line = JSON.parse(out.trim().split('\n').pop());
  check({ ...line, adapter: 'cpu' }, 'cat.jpg', 'Node.js');
  assert.equal(line.backend, 'cpu');
  console.log(`Node.js w32 forward pass (first run): ${line.forwardMs.toFixed(1)} ms`);
});

/** A page with the installed package as `window.activeshift`, that fails the test on errors. */
async function harness(browser) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && console.log(`  [browser] ${m.text()}`));
  await page.goto(server.url + 'harness.html');
  await page.waitForFunction(() => document.title === 'ready');
  return { page, errors };
}

/**
 * In the page: load w32 with `options`, classify cat.jpg (a Blob) while a heartbeat measures
 * the longest the main thread went without answering; also the error contract.
 */
async function mainThread(page, options) {
  return page.evaluate(async ({ heartbeat = true, ...options }) => {
    const { Classifier } = window.activeshift;
    let longest = 0;
    let last = performance.now();
    let beating = heartbeat;
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      const t = performance.now();
      longest = Math.max(longest, t - last);
      last = t;
      if (beating) setTimeout(() => channel.port2.postMessage(0), 0);
    };
    if (heartbeat) channel.port2.postMessage(0);
    // Tasks that ran over 50 ms on this thread. A heartbeat gap also counts the time the
    // thread waited for a CPU on a loaded host, and a heartbeat keeps the thread in a task
    // nearly all the time, so the runs that assert on long tasks go without one.
    const longTasks = [];
    const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
    observer.observe({ type: 'longtask' });
    const progress = [];
    const share = options.share ? await (await navigator.gpu.requestAdapter()).requestDevice() : undefined;
    const c = await Classifier.load('/test-data/w32.safetensors', {
      ...options, ...(share ? { device: share } : {}), onProgress: (p) => progress.push(p),
    });
    const cat = await (await fetch('/test-data/cat.jpg')).blob();
    const first = await c.classify(cat);
    const warm = await c.classify(cat);
    beating = false;
    longTasks.push(...observer.takeRecords().map((e) => e.duration));
    observer.disconnect();
    const info = await c.info();
    const shifts = await c.shifts();
    const batch = await c.classify([cat, new Uint8Array(await cat.arrayBuffer())], { top: 5 });
    const codes = {};
    try { await c.classify(new Uint8Array([1, 2, 3])); } catch (e) { codes.image = `${e.name} ${e.code} ${e instanceof Error}`; }
    try { await c.classify(cat, { top: 0 }); } catch (e) { codes.top = e.code; }
    await c.dispose();
    try { await c.dispose(); } catch (e) { codes.dispose = e.code; }
    try { await c.classify(cat); } catch (e) { codes.after = e.code; }
    try { await Classifier.load(new Uint8Array(16)); } catch (e) { codes.model = e.code; }
    let sharedOk = null;
    if (share) {
      // The page's device still works after the classifier is gone.
      const b = share.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
      share.queue.writeBuffer(b, 0, new Uint32Array([7, 8, 9, 10]));
      await b.mapAsync(GPUMapMode.READ);
      sharedOk = Array.from(new Uint32Array(b.getMappedRange()));
    }
    return { first, warm, info, shifts: shifts.length, batch, codes, longest, longTask: Math.max(0, ...longTasks), longTasks: longTasks.length, progress: progress.at(-1), progressCalls: progress.length, sharedOk };
  }, options);
}

function report(r, where) {
  check(r.first, 'cat.jpg', where);
  check(r.warm, 'cat.jpg', `${where}, warm`);
  for (const b of r.batch) check(b, 'cat.jpg', `${where}, batch`);
  assert.equal(r.info.name, 'as-resnet-w32');
  assert.equal(r.info.labels.length, 1000);
  assert.deepEqual(r.info.inputSize, { channels: 3, height: 224, width: 224 });
  assert.equal(r.info.parameters, 901256);
  assert.equal(r.shifts, 17);
  assert.ok(r.progressCalls >= 2 && r.progress.loaded === r.progress.total, JSON.stringify(r.progress));
  assert.match(r.codes.image, /^ActiveShiftError BAD_IMAGE true$/);
  assert.deepEqual({ ...r.codes, image: undefined }, { image: undefined, top: 'BAD_ARGUMENT', dispose: 'DISPOSED', after: 'DISPOSED', model: 'BAD_MODEL' });
  console.log(`${where}: first run ${r.first.timings.forwardMs.toFixed(0)} ms, warm ${r.warm.timings.forwardMs.toFixed(0)} ms ` +
    `(decode ${r.warm.timings.decodeMs.toFixed(0)} ms, preprocess ${r.warm.timings.preprocessMs.toFixed(0)} ms); ` +
    `while loading and classifying twice: longest main-thread task ${r.longTask.toFixed(0)} ms (${r.longTasks} over 50 ms)` +
    (r.longest ? `, longest heartbeat gap ${r.longest.toFixed(0)} ms` : ''));
}

test('browser main thread: the installed package classifies cat.jpg on WebGPU and on the CPU engine', { timeout: 600_000, ...needsW32 }, async () => {
  const browser = await chromium.launch({ executablePath, headless: true, args: [...ARGS, '--enable-unsafe-webgpu'] });
  try {
    const { page, errors } = await harness(browser);
    const gpu = await mainThread(page, { backend: 'webgpu' });
    assert.equal(gpu.first.backend, 'webgpu');
    report(gpu, 'main thread, WebGPU');
    // WebGPU waits asynchronously; what remains on the thread is parsing, decoding, uploading.
    assert.ok(gpu.longest < 1000, `the main thread was held ${gpu.longest} ms on WebGPU`);
    const cpu = await mainThread(page, { backend: 'cpu' });
    assert.equal(cpu.first.backend, 'cpu');
    assert.equal(cpu.first.adapter, 'cpu');
    report(cpu, 'main thread, CPU engine');
    const shared = await mainThread(page, { share: true });
    assert.equal(shared.first.backend, 'webgpu');
    report(shared, "main thread, the page's own GPUDevice");
    assert.deepEqual(shared.sharedOk, [7, 8, 9, 10]);
    // Pixel inputs: a sample PNG as <img>, canvas, ImageBitmap, ImageData (lossless: as native).
    const pixels = await page.evaluate(async () => {
      const c = await window.activeshift.Classifier.load('/test-data/w32.safetensors', { backend: 'webgpu' });
      const img = new Image();
      img.src = '/test-data/orange.png';
      await img.decode();
      const canvas = document.createElement('canvas');
      [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const bitmap = await createImageBitmap(img);
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const out = await c.classify([img, canvas, bitmap, data]);
      await c.dispose();
      return out;
    });
    for (const [i, kind] of ['<img>', 'canvas', 'ImageBitmap', 'ImageData'].entries()) check(pixels[i], 'orange.png', kind);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('browser main thread, worker: true: the package runs the classifier in its own worker (WebGPU, CPU engine)', { timeout: 600_000, ...needsW32 }, async () => {
  const browser = await chromium.launch({ executablePath, headless: true, args: [...ARGS, '--enable-unsafe-webgpu'] });
  try {
    const { page, errors } = await harness(browser);
    for (const backend of ['webgpu', 'cpu']) {
      const r = await mainThread(page, { backend, worker: true, heartbeat: false });
      assert.equal(r.first.backend, backend);
      report(r, `worker: true, ${backend === 'cpu' ? 'CPU engine' : 'WebGPU'}`);
      // The goal: nothing holds the page's thread for more than about a frame (no long task).
      assert.ok(r.longTask <= 50, `worker: true, ${backend}: a main-thread task took ${r.longTask} ms`);
    }
    // Pixel sources cross to the worker as transferred ImageBitmaps; no GPUDevice with a worker.
    const out = await page.evaluate(async () => {
      const { Classifier } = window.activeshift;
      const c = await Classifier.load('/test-data/w32.safetensors', { backend: 'cpu', worker: true });
      const img = new Image();
      img.src = '/test-data/orange.png';
      await img.decode();
      const canvas = document.createElement('canvas');
      [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const bitmap = await createImageBitmap(img);
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const results = await c.classify([img, canvas, bitmap, data, '/test-data/orange.png']);
      const info = await c.info();
      await c.dispose();
      let device = null;
      try { await Classifier.load('fashion', { worker: true, device: {} }); } catch (e) { device = e.code; }
      return { results, bitmapOpen: bitmap.width > 0, source: info.source, device };
    });
    for (const [i, kind] of ['<img>', 'canvas', 'ImageBitmap', 'ImageData', 'URL'].entries()) check(out.results[i], 'orange.png', `worker: true, ${kind}`);
    assert.ok(out.bitmapOpen, "the caller's ImageBitmap was closed");
    assert.equal(out.source, '/test-data/w32.safetensors');
    assert.equal(out.device, 'BAD_ARGUMENT');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('worker: true with the built-in model, on the CPU engine (no authors\' data needed)', { timeout: 300_000 }, async () => {
  const browser = await chromium.launch({ executablePath, headless: true, args: ARGS });
  try {
    const { page, errors } = await harness(browser);
    const r = await page.evaluate(async () => {
      const { Classifier } = window.activeshift;
      const progress = [];
      const c = await Classifier.load('fashion', { worker: true, onProgress: (p) => progress.push(p) });
      const img = new Image();
      img.src = '/samples/sneaker.png';
      await img.decode();
      const one = await c.classify(img);
      const many = await c.classify(['/samples/sneaker.png', await (await fetch('/samples/sneaker.png')).blob()]);
      const info = await c.info();
      const shifts = await c.shifts();
      const codes = {};
      try { await c.classify(new Uint8Array([1, 2, 3])); } catch (e) { codes.image = `${e.name} ${e.code} ${e instanceof Error}`; }
      try { await c.classify(img, { top: 0 }); } catch (e) { codes.top = e.code; }
      await c.dispose();
      try { await c.info(); } catch (e) { codes.after = e.code; }
      try { await Classifier.load(new Uint8Array(16), { worker: true }); } catch (e) { codes.model = e.code; }
      return { results: [one, ...many], info, shifts: shifts.length, f32: shifts[0].x instanceof Float32Array, progress: progress.length, codes };
    });
    for (const [i, kind] of ['<img>', 'URL', 'Blob'].entries()) check(r.results[i], 'sneaker.png', `worker: true, built-in model, ${kind}`);
    assert.equal(r.results[0].backend, 'cpu');
    assert.equal(r.info.source, 'fashion');
    assert.ok(r.shifts > 0 && r.f32 && r.progress >= 1, JSON.stringify(r));
    assert.deepEqual(r.codes, { image: 'ActiveShiftError BAD_IMAGE true', top: 'BAD_ARGUMENT', after: 'DISPOSED', model: 'BAD_MODEL' });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('browser worker: the package in a module worker, on WebGPU and on the CPU engine', { timeout: 600_000, ...needsW32 }, async () => {
  for (const webgpu of [true, false]) {
    const browser = await chromium.launch({ executablePath, headless: true, args: webgpu ? [...ARGS, '--enable-unsafe-webgpu'] : ARGS });
    try {
      const { page, errors } = await harness(browser);
      const r = await page.evaluate(async () => {
        const longTasks = [];
        const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
        observer.observe({ type: 'longtask' });
        const worker = new Worker('/worker.js', { type: 'module' });
        const ask = (msg) => new Promise((resolve) => {
          worker.onmessage = ({ data }) => resolve(data);
          worker.postMessage(msg);
        });
        const image = await (await fetch('/test-data/cat.jpg')).blob();
        const first = await ask({ model: '/test-data/w32.safetensors', image });
        const bitmap = await createImageBitmap(await (await fetch('/test-data/orange.png')).blob());
        const orange = await ask({ image: bitmap });
        longTasks.push(...observer.takeRecords().map((e) => e.duration));
        observer.disconnect();
        worker.terminate();
        return { first, orange, longTask: Math.max(0, ...longTasks) };
      });
      assert.equal(r.first.error, undefined, JSON.stringify(r.first.error));
      const where = `worker, ${webgpu ? 'WebGPU' : 'no WebGPU adapter'}`;
      assert.equal(r.first.result.backend, webgpu ? 'webgpu' : 'cpu');
      check(r.first.result, 'cat.jpg', where);
      check(r.orange.result, 'orange.png', `${where}, ImageBitmap`);
      console.log(`${where}: forward ${r.first.result.timings.forwardMs.toFixed(0)} ms; meanwhile the longest main-thread task ${r.longTask.toFixed(0)} ms (0: none over 50 ms)`);
      assert.ok(r.longTask <= 50, `a main-thread task took ${r.longTask} ms while the worker worked`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  }
});

test('the minimal example, as written (import map) and bundled by esbuild', { timeout: 600_000, ...needsW32 }, async () => {
  // esbuild resolves 'activeshift' from node_modules; the wasm file and the built-in model are
  // loaded relative to the bundle (new URL(..., import.meta.url)), so they are copied beside it.
  const bundle = join(app, 'bundled');
  execFileSync(join(web, 'node_modules/.bin/esbuild'), [join(app, 'examples/minimal/main.js'), '--bundle', '--format=esm', '--platform=browser', `--outfile=${join(bundle, 'main.js')}`], { cwd: app, stdio: 'inherit' });
  copyFileSync(join(app, 'node_modules/activeshift/activeshift_web_bg.wasm'), join(bundle, 'activeshift_web_bg.wasm'));
  writeFileSync(join(bundle, 'index.html'), readFileSync(join(app, 'examples/minimal/index.html'), 'utf8').replace(/<script type="importmap">.*<\/script>\n/, ''));
  writeFileSync(join(app, 'examples/minimal/index.html'), readFileSync(join(app, 'examples/minimal/index.html'), 'utf8').replace('./node_modules/', '/node_modules/'));
  const browser = await chromium.launch({ executablePath, headless: true, args: [...ARGS, '--enable-unsafe-webgpu'] });
  try {
    for (const path of ['examples/minimal/', 'bundled/']) {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.url}${path}?model=/test-data/w32.safetensors&image=/test-data/cat.jpg`);
      await page.waitForFunction(() => document.getElementById('out').textContent.trim().startsWith('{') || /: /.test(document.getElementById('out').textContent), null, { timeout: 300_000 });
      const out = await page.locator('#out').textContent();
      assert.ok(out.startsWith('{'), `${path}: ${out}`);
      // <img> decoding is the browser's (JPEG decoders differ slightly from the Rust one).
      const got = JSON.parse(out);
      const want = native.get('cat.jpg');
      console.log(`${path}: ${got.backend} top-5 ${got.top.map((t) => t.index).join(' ')}; native ${want.top.map((t) => t.class).join(' ')}`);
      assert.equal(got.top[0].index, want.top[0].class);
      assert.deepEqual(errors, []);
      await page.close();
    }
  } finally {
    await browser.close();
  }
});

// The demo page, built on the npm package `activeshift` (pkg/, built by web/build.sh): the
// package's Classifier decodes, preprocesses and classifies (in Rust, on WebGPU or the CPU);
// this file only moves files in and draws results.
//
// Automation contract: `?image=URL` classifies on load; when a classification is done, the
// JSON object of `activeshift classify --json` is the text of #result-json; a failure puts a
// message into #error. <body data-state> is `loading`, `busy` or `idle`. `?tune=1` (or the
// "Tune for this device" button) measures the kernels for the loaded model, then classifies
// the last image again with them; the measurement's JSON report is the text of #tune-json and
// <body data-tuned> counts the op shapes with a measured decision.
import { Classifier } from './pkg/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_MODEL = 'fashion'; // the package's built-in model (pkg/models/fashion.safetensors)
const SAMPLES = [
  ['orange.png', 'orange'],
  ['crossword.png', 'crossword'],
  ['tshirt.png', 'T-shirt'],
  ['sneaker.png', 'sneaker'],
];

let classifier = null; // the package's Classifier of the current model
let model = null; // its info()
let firstMs = null; // first forward pass of the current model
let modelError = null; // why the last model load failed (while no model is loaded)
let pending = 0;
let lastImage = null; // [input, name, previewUrl] of the last image classified
const wantGpu = params.get('backend') !== 'cpu';
const loadOptions = {
  backend: wantGpu ? 'auto' : 'cpu',
  ...(params.get('kernels') === 'gpu' || params.get('kernels') === 'cpu' ? { kernels: params.get('kernels') } : {}),
};

// Tuning: the time per op shape (shared by its candidate kernels) and for the whole model (op
// shapes not reached keep the rules). The decisions are kept in localStorage; the library
// refuses them on another adapter, driver or kernel version.
const TUNE_PER_KEY_MS = 150;
const TUNE_TOTAL_MS = 120_000;
const TUNING_STORE = 'activeshift.tuning';
let queue = Promise.resolve();

/** Run tasks one after another (one classification or model load at a time). */
function enqueue(task) {
  pending++;
  document.body.dataset.state = 'busy';
  const run = queue.then(task).finally(() => {
    if (--pending === 0) document.body.dataset.state = 'idle';
  });
  queue = run.catch(() => {});
  return run;
}

function showError(msg) {
  $('error').textContent = msg;
  console.error(msg);
}
function clearError() {
  $('error').textContent = '';
}
function notice(msg) {
  const n = $('notice');
  n.hidden = !msg;
  n.textContent = msg ?? '';
}
const errText = (e) => (e instanceof Error ? e.message : String(e));

// ---------------------------------------------------------------- models

/** Load a model (URL, File, or the built-in name) and make it the page's; on error the
 * previous model stays. */
async function loadModel(source, name) {
  let next;
  let info;
  let shifts;
  try {
    next = await Classifier.load(source, loadOptions);
    if (next) await restoreTuning(next);
    info = await next.info();
    shifts = await next.shifts();
  } catch (e) {
    await next?.dispose().catch(() => {});
    // A file's name prefixes its error; a URL is named by the error itself.
    throw new Error(source instanceof File ? `${name}: ${errText(e)}` : errText(e));
  }
  const previous = classifier;
  classifier = next;
  model = info;
  await previous?.dispose();
  firstMs = null;
  await onBackend(info);
  const where = info.backend === 'webgpu' ? 'WebGPU' : 'CPU';
  $('model-info').textContent =
    `${info.name} · ${info.classes} classes · ${info.parameters.toLocaleString('en')} parameters · ` +
    `input ${info.inputSize.channels}×${info.inputSize.height}×${info.inputSize.width} · ` +
    `${info.shiftLayers} shift layers · ${where} · from ${name}`;
  $('bars').replaceChildren();
  $('timing').textContent = '';
  $('result-json').textContent = '';
  lastImage = null;
  $('tune').disabled = info.backend !== 'webgpu';
  drawShifts(shifts);
}

/** Run a model load, remembering why it failed (shown again by a classification without a
 * model, e.g. `?image=` after a bad `?model=`). */
async function tryModelLoad(load) {
  try {
    await load();
    modelError = null;
  } catch (e) {
    modelError = errText(e);
    showError(modelError);
  }
}

async function loadDefaultModel() {
  try {
    await loadModel(DEFAULT_MODEL, 'the bundled default model');
  } catch (e) {
    if (!/could not fetch/.test(errText(e))) throw e;
    notice(noticeText('The default model (pkg/models/fashion.safetensors, from the package) ' +
      'is missing: load an activeshift model (.safetensors) with the button below, by dropping ' +
      'it onto the page, or with ?model=URL.'));
  }
}

// ---------------------------------------------------------------- classification

/** The package's result as the JSON object `activeshift classify --json` prints. */
function cliJson(r, imageName) {
  return {
    ...(imageName ? { image: imageName } : {}),
    model: model.name,
    backend: r.adapter,
    top: r.top.map((t) => ({ class: t.index, label: t.label, prob: t.probability })),
  };
}

async function classify(input, imageName, previewUrl) {
  const preview = $('preview');
  preview.src = previewUrl;
  preview.hidden = false;
  $('drop-hint').hidden = true;
  $('result-json').textContent = '';
  if (!classifier) {
    throw new Error(modelError
      ? `no model is loaded: loading it failed: ${modelError}`
      : 'no model is loaded: load an activeshift model (.safetensors) first');
  }
  const top = Math.max(1, Math.min(Number(params.get('top')) || 5, model.classes));
  // Let the page paint "busy" before the work starts.
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  let out = await classifier.classify(input, { top });
  if (out.timings.firstRun) {
    firstMs = out.timings.forwardMs;
    // Once per model: run again for the warm time (pipelines compiled, buffers allocated).
    out = await classifier.classify(input, { top });
  }
  lastImage = [input, imageName, previewUrl];
  const result = cliJson(out, imageName);
  $('top-title').textContent = `Top ${result.top.length}`;
  drawBars(result.top);
  const gpu = out.backend === 'webgpu';
  const compile = gpu ? ' (includes compiling the WGSL pipelines)' : '';
  const first = firstMs === null ? '' : `first run ${ms(firstMs)}${compile}, `;
  $('timing').textContent =
    `Forward pass on ${gpu ? 'WebGPU' : 'the CPU (wasm)'}: ${first}warm ${ms(out.timings.forwardMs)}; ` +
    `decoding and preprocessing ${ms(out.timings.decodeMs + out.timings.preprocessMs)}.`;
  $('result-json').textContent = JSON.stringify(result);
  return result;
}

const ms = (t) => (t >= 1000 ? `${(t / 1000).toFixed(2)} s` : `${t.toFixed(1)} ms`);

function classifyUrl(url, name) {
  return enqueue(async () => {
    clearError();
    try {
      await classify(url, name ?? url, url);
    } catch (e) {
      showError(errText(e));
    }
  });
}

function classifyFile(file) {
  return enqueue(async () => {
    clearError();
    try {
      await classify(file, null, URL.createObjectURL(file));
    } catch (e) {
      showError(`${file.name}: ${errText(e)}`);
    }
  });
}

function loadModelFile(file) {
  return enqueue(async () => {
    clearError();
    await tryModelLoad(() => loadModel(file, file.name));
  });
}

/** Dropped or picked files: `.safetensors` are models, anything else is taken as an image. */
function openFile(file) {
  if (/\.safetensors$/i.test(file.name)) return loadModelFile(file);
  return classifyFile(file);
}

// ---------------------------------------------------------------- tuning

function tuneStatus(msg) {
  $('tune-status').textContent = msg;
}

/** Give a freshly loaded classifier the decisions kept earlier, if measured on this adapter. */
async function restoreTuning(c) {
  if ((await c.info()).backend !== 'webgpu') return;
  let text = null;
  try {
    text = localStorage.getItem(TUNING_STORE);
  } catch {
    text = null;
  }
  if (!text) return;
  try {
    const n = await c.useTuning(text);
    document.body.dataset.tuned = String((await c.tuning()).count);
    tuneStatus(`${n} op shapes tuned on this device earlier (kept in this browser); the rules ` +
      'choose for the others');
  } catch (e) {
    tuneStatus(`chosen by the rules (a kept tuning was not used: ${errText(e)})`);
  }
}

/** Measure the kernels for the loaded model, keep the decisions, rerun the last image. */
function tuneModel() {
  return enqueue(async () => {
    clearError();
    const bar = $('tune-progress');
    const button = $('tune');
    button.disabled = true;
    bar.hidden = false;
    bar.removeAttribute('value');
    tuneStatus('tuning: a first forward pass to find the op shapes…');
    try {
      await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
      const report = await classifier.tune({
        perKeyMs: TUNE_PER_KEY_MS,
        totalMs: TUNE_TOTAL_MS,
        onProgress: ({ index: i, count: n, key }) => {
          bar.max = n;
          bar.value = i;
          tuneStatus(`tuning ${i + 1} of ${n} op shapes: ${key}`);
        },
      });
      const differ = report.entries.filter((e) => e.chosen !== e.rule).length;
      const kept = await classifier.tuning();
      document.body.dataset.tuned = String(kept.count);
      tuneStatus(`tuned: ${report.tuned} of ${report.shapes} op shapes measured in ` +
        `${ms(report.ms)} (${report.clock}); ${differ} run another kernel than the rules pick`);
      $('tune-json').textContent = JSON.stringify(report, null, 1);
      $('tune-details').hidden = false;
      try {
        localStorage.setItem(TUNING_STORE, kept.json);
      } catch {
        // Storage full or disabled: the decisions still hold for this visit.
      }
    } catch (e) {
      tuneStatus('chosen by the rules');
      showError(`tuning: ${errText(e)}`);
      return;
    } finally {
      bar.hidden = true;
      button.disabled = model?.backend !== 'webgpu';
    }
    if (lastImage) {
      try {
        await classify(...lastImage);
      } catch (e) {
        showError(errText(e));
      }
    }
  });
}

// ---------------------------------------------------------------- drawing

function drawBars(top) {
  const list = $('bars');
  list.replaceChildren(
    ...top.map(({ class: cls, label, prob }) => {
      const li = document.createElement('li');
      const name = document.createElement('span');
      name.className = 'label';
      name.textContent = label;
      name.title = `class ${cls}`;
      const bar = document.createElement('span');
      bar.className = 'bar';
      const fill = document.createElement('span');
      fill.style.width = `${Math.max(0, Math.min(1, prob)) * 100}%`;
      bar.append(fill);
      const p = document.createElement('span');
      p.className = 'prob';
      p.textContent = `${(prob * 100).toFixed(2)}%`;
      li.append(name, bar, p);
      return li;
    }),
  );
}

function drawShifts(layers) {
  const box = $('shift-plots');
  box.replaceChildren();
  const css = 150;
  const dpr = window.devicePixelRatio || 1;
  for (const layer of layers) {
    const fig = document.createElement('figure');
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = Math.round(css * dpr);
    canvas.style.width = canvas.style.height = `${css}px`;
    const ctx = canvas.getContext('2d');
    ctx.scale(dpr, dpr);
    // The plot's reach: the largest |shift| (at most 2^20, where the kernels clamp shifts).
    let r = 1;
    for (const v of [...layer.x, ...layer.y]) {
      if (Number.isFinite(v)) r = Math.max(r, Math.min(Math.abs(v), 2 ** 20));
    }
    r = Math.ceil(r * 1.05);
    const pad = 6;
    const s = (css - 2 * pad) / (2 * r);
    const px = (v) => pad + (Math.max(-r, Math.min(r, v)) + r) * s;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, css, css);
    ctx.lineWidth = 1;
    // Grid lines every `step` pixels of shift: at most about 20 per axis whatever the reach
    // (one per pixel looped 2e30 times for shifts of 1e30).
    const step = 10 ** Math.max(0, Math.ceil(Math.log10(r / 10)));
    const last = Math.floor(r / step) * step;
    for (let g = -last; g <= last; g += step) {
      ctx.strokeStyle = g === 0 ? '#888' : '#e2e2e2';
      ctx.beginPath();
      ctx.moveTo(px(g), pad);
      ctx.lineTo(px(g), css - pad);
      ctx.moveTo(pad, px(g));
      ctx.lineTo(css - pad, px(g));
      ctx.stroke();
    }
    ctx.fillStyle = 'rgba(200, 60, 20, 0.55)';
    for (let i = 0; i < layer.channels; i++) {
      ctx.beginPath();
      ctx.arc(px(layer.x[i]), px(layer.y[i]), 1.8, 0, 2 * Math.PI);
      ctx.fill();
    }
    const cap = document.createElement('figcaption');
    cap.textContent = `${layer.name} · ${layer.channels} ch · stride ${layer.stride} · ±${r} px`;
    fig.append(canvas, cap);
    box.append(fig);
  }
}

// ---------------------------------------------------------------- start

let gpuNotice = null;
function noticeText(extra) {
  return [gpuNotice, extra].filter(Boolean).join(' ') || null;
}

/** Say where models run (from the loaded classifier's info), and why not on WebGPU. */
async function onBackend(info) {
  const hasWebGpu = typeof navigator !== 'undefined' && !!navigator.gpu;
  gpuNotice = null;
  if (info.backend !== 'webgpu') {
    gpuNotice = !wantGpu
      ? 'Running on the CPU as asked (?backend=cpu).'
      : !hasWebGpu
        ? 'This browser has no WebGPU: the model runs on the CPU instead (the same Rust code, ' +
          'compiled to WebAssembly), which is slower.'
        : `WebGPU is unusable here (${info.fallbackReason}): the model runs on the CPU ` +
          'instead (the same Rust code, compiled to WebAssembly), which is slower.';
  }
  document.body.classList.toggle('cpu', info.backend !== 'webgpu');
  notice(noticeText());
  $('adapter').textContent = await adapterText(info);
}

async function adapterText(info) {
  if (info.backend !== 'webgpu') return 'CPU (the library’s CPU engine in WebAssembly)';
  let details = '';
  try {
    const a = await navigator.gpu.requestAdapter();
    const i = a?.info;
    if (i) {
      details = [i.description, i.vendor, i.architecture, i.device].filter(Boolean).join(' · ');
      if (i.isFallbackAdapter) details += ' (software fallback adapter)';
    }
  } catch {
    details = '';
  }
  return `WebGPU: ${info.adapter || details || 'unnamed adapter'}` +
    (details && info.adapter && details !== info.adapter ? ` (${details})` : '') +
    ` — kernels: ${info.kernels}`;
}

function wireUp() {
  $('tune').addEventListener('click', () => tuneModel());
  $('image-file').addEventListener('change', (e) => {
    const f = e.target.files?.[0];
    if (f) classifyFile(f);
    e.target.value = '';
  });
  $('model-file').addEventListener('change', (e) => {
    const f = e.target.files?.[0];
    if (f) loadModelFile(f);
    e.target.value = '';
  });
  const samples = $('samples');
  for (const [file, label] of SAMPLES) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.dataset.sample = file;
    b.addEventListener('click', () => classifyUrl(`samples/${file}`));
    samples.append(b);
  }
  const drop = $('drop');
  window.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  window.addEventListener('dragleave', (e) => {
    if (!e.relatedTarget) drop.classList.remove('over');
  });
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files?.[0];
    if (f) openFile(f);
  });
}

async function main() {
  wireUp();
  await enqueue(() =>
    tryModelLoad(() =>
      params.get('model') ? loadModel(params.get('model'), params.get('model')) : loadDefaultModel()));
  if (params.get('image')) await classifyUrl(params.get('image'));
  if (params.get('tune') && model?.backend === 'webgpu') await tuneModel();
  document.body.dataset.state = pending ? 'busy' : 'idle';
}

main().catch((e) => {
  showError(`unexpected error: ${errText(e)}`);
  document.body.dataset.state = 'idle';
});

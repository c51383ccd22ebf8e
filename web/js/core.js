// What every part of the package shares: loading the wasm module once, the error type, reading
// a model or an image from whatever the caller has (URL, bytes, Blob, canvas, video frame), and
// opening an engine on WebGPU or the CPU. `classifier.js` builds the public API on it (a
// `Trainer` would sit beside it on the same pieces).
import initWasm, { Batch, Engine } from './activeshift_web.js';

/** Built-in models: name -> file shipped in the package (fetched only when asked for). */
export const BUILTIN_MODELS = {
  fashion: new URL('./models/fashion.safetensors', import.meta.url),
};

/** The most bytes read from one source (a model or an image) unless `maxBytes` says otherwise. */
export const DEFAULT_MAX_BYTES = 1 << 30;

/**
 * Every error the package throws: `code` is stable (see index.d.ts), `message` is meant for a
 * person, `cause` keeps the underlying error.
 */
export class ActiveShiftError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'ActiveShiftError';
    this.code = code;
  }
}

/** An error from the wasm side (which sets `code`) or anything else, as an ActiveShiftError. */
export function wrapError(e, prefix = '') {
  if (e instanceof ActiveShiftError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const code = typeof e?.code === 'string' ? e.code : 'INTERNAL';
  return new ActiveShiftError(code, prefix + message, { cause: e });
}

// ---------------------------------------------------------------- the wasm module

const platform = {
  /** Node's `fs.promises.readFile`, set by node.js; null in browsers. */
  readFile: null,
};

/** Used by the Node entry point (node.js): read `file:` URLs and paths from disk. */
export function useFileReader(readFile) {
  platform.readFile = readFile;
}

let wasmSource = null;
let wasmReady = null;

/**
 * Load the wasm module (once; every `load` does this itself). `wasm` overrides where it comes
 * from: a URL (for bundlers that do not copy `activeshift_web_bg.wasm`), bytes or a
 * `WebAssembly.Module`. Called again after the module is loaded, it changes nothing.
 */
export function init(wasm) {
  if (wasm !== undefined && !wasmReady) wasmSource = wasm;
  wasmReady ??= (async () => {
    let source = wasmSource ?? new URL('./activeshift_web_bg.wasm', import.meta.url);
    if (isFileUrl(source) && platform.readFile) source = await platform.readFile(new URL(source));
    await initWasm({ module_or_path: source });
  })().catch((e) => {
    wasmReady = null;
    throw new ActiveShiftError('WASM_LOAD', `could not load the WebAssembly module: ${errText(e)}`, { cause: e });
  });
  return wasmReady;
}

const errText = (e) => (e instanceof Error ? e.message : String(e));
const isFileUrl = (u) => (u instanceof URL && u.protocol === 'file:') || (typeof u === 'string' && u.startsWith('file:'));

/** Let the event loop run (paint a frame, answer input) between steps of a long job. */
export const yieldToEventLoop = () => new Promise((r) => setTimeout(r, 0));

// ---------------------------------------------------------------- engines

/** WebGPU where it exists here (window or worker; Node has none). */
export const hasWebGpu = () => typeof navigator !== 'undefined' && !!navigator.gpu;

// One engine opens at a time: sharing a device swaps navigator.gpu.requestAdapter meanwhile.
let opening = Promise.resolve();

/**
 * Open an engine: `backend` 'auto' (WebGPU when usable, else the CPU engine), 'webgpu' (an
 * error with code NO_WEBGPU when unusable) or 'cpu'; `device` a GPUDevice of the page's to run
 * on; `kernels` 'gpu' | 'cpu' fixes the kernel family.
 */
export function openEngine({ backend = 'auto', device, kernels } = {}) {
  if (!['auto', 'webgpu', 'cpu'].includes(backend)) {
    throw new ActiveShiftError('BAD_ARGUMENT', `backend must be 'auto', 'webgpu' or 'cpu', not ${JSON.stringify(backend)}`);
  }
  if (device !== undefined && backend === 'cpu') {
    throw new ActiveShiftError('BAD_ARGUMENT', "a GPUDevice was given with backend 'cpu'");
  }
  if (kernels !== undefined && kernels !== 'gpu' && kernels !== 'cpu') {
    throw new ActiveShiftError('BAD_ARGUMENT', `kernels must be 'gpu' or 'cpu', not ${JSON.stringify(kernels)}`);
  }
  const run = opening.then(async () => {
    await init();
    const useGpu = backend !== 'cpu' && (device !== undefined || hasWebGpu());
    let engine;
    if (device !== undefined) {
      engine = await withSharedDevice(device, () => Engine.create(true, kernels, true));
    } else {
      engine = await Engine.create(useGpu, kernels, false);
    }
    if (backend === 'webgpu' && !engine.on_gpu()) {
      const why = hasWebGpu() ? engine.gpu_error() : 'this environment has no WebGPU (navigator.gpu)';
      engine.free();
      throw new ActiveShiftError('NO_WEBGPU', `WebGPU is unusable here: ${why}`);
    }
    if (device !== undefined && !engine.on_gpu()) {
      const why = engine.gpu_error();
      engine.free();
      throw new ActiveShiftError('GPU_ERROR', `cannot run on the given GPUDevice: ${why}`);
    }
    return engine;
  });
  opening = run.catch(() => {});
  return run;
}

/**
 * Run `create` while `navigator.gpu.requestAdapter()` hands out an adapter whose
 * `requestDevice()` returns `device` (wgpu asks navigator.gpu for its device; this makes it
 * adopt the page's). The adapter reports the device's features and limits.
 */
async function withSharedDevice(device, create) {
  if (typeof GPUDevice === 'undefined' || !(device instanceof GPUDevice)) {
    throw new ActiveShiftError('BAD_ARGUMENT', 'options.device must be a GPUDevice');
  }
  const gpu = navigator.gpu;
  const adapter = Object.create(GPUAdapter.prototype);
  const info = device.adapterInfo ?? { vendor: '', architecture: '', device: '', description: '' };
  Object.defineProperties(adapter, {
    features: { value: device.features },
    limits: { value: device.limits },
    info: { value: info },
    isFallbackAdapter: { value: false },
    requestDevice: { value: async () => device },
    requestAdapterInfo: { value: async () => info },
  });
  Object.defineProperty(gpu, 'requestAdapter', { value: async () => adapter, configurable: true, writable: true });
  try {
    return await create();
  } finally {
    delete gpu.requestAdapter;
  }
}

// ---------------------------------------------------------------- reading bytes

/**
 * The bytes of a model or image source: a URL (string or URL; in Node also a file path),
 * ArrayBuffer, typed array, DataView, Blob or File. `onProgress({loaded, total})` follows
 * downloads (`total` is null when the server does not say).
 */
export async function readBytes(source, { what = 'file', onProgress, maxBytes = DEFAULT_MAX_BYTES, signal } = {}) {
  const tooLarge = (n) =>
    new ActiveShiftError('TOO_LARGE', `the ${what} is ${n} bytes, more than maxBytes (${maxBytes})`);
  if (source instanceof ArrayBuffer) {
    if (source.byteLength > maxBytes) throw tooLarge(source.byteLength);
    return new Uint8Array(source);
  }
  if (ArrayBuffer.isView(source)) {
    if (source.byteLength > maxBytes) throw tooLarge(source.byteLength);
    return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    if (source.size > maxBytes) throw tooLarge(source.size);
    return new Uint8Array(await source.arrayBuffer());
  }
  if (typeof source !== 'string' && !(source instanceof URL)) {
    throw new ActiveShiftError('BAD_ARGUMENT', `cannot read a ${what} from ${describe(source)}`);
  }
  const url = toUrl(source, what);
  // Messages name the source as the caller gave it.
  const shown = typeof source === 'string' ? source : url.href;
  if (url.protocol === 'file:') {
    if (!platform.readFile) {
      throw new ActiveShiftError('FETCH_FAILED', `cannot read the ${what} ${shown}: file: URLs are read in Node.js only`);
    }
    let bytes;
    try {
      bytes = await platform.readFile(url);
    } catch (e) {
      throw new ActiveShiftError('FETCH_FAILED', `cannot read the ${what} ${shown}: ${errText(e)}`, { cause: e });
    }
    if (bytes.byteLength > maxBytes) throw tooLarge(bytes.byteLength);
    onProgress?.({ loaded: bytes.byteLength, total: bytes.byteLength });
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  return download(url, shown, what, onProgress, maxBytes, signal, tooLarge);
}

async function download(url, shown, what, onProgress, maxBytes, signal, tooLarge) {
  let res;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    throw new ActiveShiftError('FETCH_FAILED', `could not fetch the ${what} ${shown}: ${errText(e)}`, { cause: e });
  }
  if (!res.ok) throw new ActiveShiftError('FETCH_FAILED', `could not fetch the ${what} ${shown}: HTTP ${res.status}`);
  const header = Number(res.headers.get('content-length'));
  const total = Number.isFinite(header) && header > 0 ? header : null;
  if (total !== null && total > maxBytes) throw tooLarge(total);
  const chunks = [];
  let loaded = 0;
  onProgress?.({ loaded, total });
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      loaded += value.byteLength;
      if (loaded > maxBytes) {
        await reader.cancel();
        throw tooLarge(`over ${maxBytes}`);
      }
      chunks.push(value);
      onProgress?.({ loaded, total });
    }
  } catch (e) {
    if (e instanceof ActiveShiftError) throw e;
    throw new ActiveShiftError('FETCH_FAILED', `could not fetch the ${what} ${shown}: ${errText(e)}`, { cause: e });
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function toUrl(source, what) {
  if (source instanceof URL) return source;
  try {
    const base = globalThis.location?.href;
    if (base) return new URL(source, base);
    if (/^[a-z][a-z0-9+.-]*:/i.test(source) && !/^[a-z]:[\\/]/i.test(source)) return new URL(source);
  } catch (e) {
    throw new ActiveShiftError('BAD_ARGUMENT', `not a URL for the ${what}: ${source}`, { cause: e });
  }
  // Node: a file path, relative to the working directory.
  if (typeof process !== 'undefined' && process.cwd) {
    const abs = source.startsWith('/') ? source : `${process.cwd()}/${source}`;
    return new URL(`file://${abs.split('/').map(encodeURIComponent).join('/')}`);
  }
  throw new ActiveShiftError('BAD_ARGUMENT', `not a URL for the ${what}: ${source}`);
}

function describe(v) {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return v.constructor?.name ?? 'an object';
}

// ---------------------------------------------------------------- images

/**
 * Put one image into `batch`: encoded bytes (ArrayBuffer, typed array, Blob, a URL) are decoded
 * by the library's Rust decoders, as the native CLI does; pixel sources (ImageData, canvases,
 * <img>, ImageBitmap, <video>, VideoFrame) are drawn at their natural size and read as RGBA.
 */
export async function addImage(batch, input, index, { maxBytes } = {}) {
  const at = index === null ? '' : `image ${index}: `;
  const bad = (msg, cause) => new ActiveShiftError('BAD_IMAGE', at + msg, cause ? { cause } : undefined);
  if (input === null || input === undefined) throw bad(`no image (${input})`);
  if (isImageData(input)) {
    pushRgba(batch, input.data, input.width, input.height, at);
    return;
  }
  if (isPixelSource(input)) {
    const { data, width, height } = await pixels(input, bad);
    pushRgba(batch, data, width, height, at);
    return;
  }
  let bytes;
  try {
    bytes = await readBytes(input, { what: 'image', maxBytes });
  } catch (e) {
    throw e.code === 'BAD_ARGUMENT'
      ? new ActiveShiftError('BAD_ARGUMENT', at + `unsupported image input: ${describe(input)}`)
      : wrapError(e, at);
  }
  try {
    batch.push_encoded(bytes);
  } catch (e) {
    throw wrapError(e, at);
  }
}

function pushRgba(batch, data, width, height, at) {
  try {
    batch.push_rgba(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height);
  } catch (e) {
    throw wrapError(e, at);
  }
}

const isImageData = (v) =>
  (typeof ImageData !== 'undefined' && v instanceof ImageData) ||
  (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v) && ArrayBuffer.isView(v.data) &&
    Number.isInteger(v.width) && Number.isInteger(v.height));

const classes = ['HTMLImageElement', 'SVGImageElement', 'HTMLCanvasElement', 'OffscreenCanvas', 'ImageBitmap', 'HTMLVideoElement', 'VideoFrame'];
const isPixelSource = (v) => classes.some((c) => typeof globalThis[c] === 'function' && v instanceof globalThis[c]);

/** Draw a pixel source at its natural size and read its RGBA pixels. */
async function pixels(src, bad) {
  let width;
  let height;
  if (typeof HTMLImageElement !== 'undefined' && src instanceof HTMLImageElement) {
    try {
      await src.decode();
    } catch (e) {
      throw bad(`the <img> did not load (${src.currentSrc || src.src || 'no src'})`, e);
    }
    [width, height] = [src.naturalWidth, src.naturalHeight];
  } else if (typeof HTMLVideoElement !== 'undefined' && src instanceof HTMLVideoElement) {
    if (src.readyState < 2) throw bad('the <video> has no current frame yet (readyState < HAVE_CURRENT_DATA)');
    [width, height] = [src.videoWidth, src.videoHeight];
  } else if (typeof VideoFrame !== 'undefined' && src instanceof VideoFrame) {
    [width, height] = [src.displayWidth, src.displayHeight];
  } else {
    [width, height] = [src.width, src.height];
  }
  if (!(width > 0 && height > 0)) throw bad(`the image is empty (${width}x${height})`);
  let ctx;
  if (typeof OffscreenCanvas !== 'undefined') {
    ctx = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
  } else {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    ctx = canvas.getContext('2d', { willReadFrequently: true });
  }
  try {
    ctx.drawImage(src, 0, 0, width, height);
    return ctx.getImageData(0, 0, width, height);
  } catch (e) {
    // A cross-origin image without CORS taints the canvas.
    throw bad(`cannot read the pixels: ${errText(e)}`, e);
  }
}

export { Batch, Engine };

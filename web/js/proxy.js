// `Classifier.load(source, { worker: true })`: the classifier runs in a module Web Worker that the
// package spawns itself (worker.js), so loading a model and classifying never hold the page's
// thread (the CPU engine's forward pass and the WebGPU model upload included). The page side
// turns what cannot cross a thread into what can: relative URLs into absolute ones, <img>,
// canvases and video frames into ImageBitmaps (made off the main thread by the browser and
// transferred, not copied), callbacks into progress messages. Errors come back with their code.
import { ActiveShiftError, BUILTIN_MODELS } from './core.js';

/** Web Workers here (browsers; Node.js has none in this sense). */
export const hasWorkers = () => typeof Worker === 'function' && typeof location !== 'undefined';

/** The worker side of one classifier: calls by id, answers and progress by id. */
export class Remote {
  #worker;
  #pending = new Map();
  #next = 1;
  #dead = null;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const call = this.#pending.get(data.id);
      if (!call) return;
      if ('progress' in data) {
        call.onProgress?.(data.progress);
        return;
      }
      this.#pending.delete(data.id);
      if (data.error) call.reject(new ActiveShiftError(data.error.code, data.error.message));
      else call.resolve(data.value);
    };
    const die = (why) => {
      this.#dead = new ActiveShiftError('WORKER_FAILED', `the classifier's worker failed: ${why}`);
      for (const call of this.#pending.values()) call.reject(this.#dead);
      this.#pending.clear();
      worker.terminate();
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      die(e.message || 'it could not be started (is worker.js served beside index.js?)');
    };
    worker.onmessageerror = () => die('a message could not be read');
  }

  /** Call `method(...args)` on the worker's classifier; `transfer` moves buffers and bitmaps. */
  call(method, args = [], { transfer = [], onProgress } = {}) {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      try {
        this.#worker.postMessage({ id, method, args }, transfer);
      } catch (e) {
        this.#pending.delete(id);
        reject(new ActiveShiftError('BAD_ARGUMENT', `cannot send this to the worker: ${e.message ?? e}`, { cause: e }));
      }
    });
  }

  /** Ask the worker to cancel the call `id`'s download (`signal`). */
  abort(id) {
    this.#worker.postMessage({ id: 0, method: 'abort', args: [id] });
  }

  get nextId() {
    return this.#next;
  }

  terminate() {
    this.#worker.terminate();
  }
}

/** Spawn the worker and load the model there. Resolves to `{ remote, info, name }`. */
export async function openRemote(source, options) {
  const { device, onProgress, signal, worker: _, ...rest } = options;
  if (!hasWorkers()) {
    throw new ActiveShiftError('BAD_ARGUMENT', 'worker: true needs Web Workers (a browser page or worker); Node.js runs the engine in-process');
  }
  if (device !== undefined) {
    throw new ActiveShiftError('BAD_ARGUMENT', "a GPUDevice cannot be shared with the package's worker: pass either device or worker: true");
  }
  signal?.throwIfAborted?.();
  let worker;
  try {
    worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'activeshift' });
  } catch (e) {
    throw new ActiveShiftError('WORKER_FAILED', `cannot start the classifier's worker: ${e.message ?? e}`, { cause: e });
  }
  const remote = new Remote(worker);
  const id = remote.nextId;
  const onAbort = () => remote.abort(id);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const [info, name] = await remote.call('load', [portable(source), { ...rest, signal: !!signal }], { onProgress });
    return { remote, info, name };
  } catch (e) {
    remote.terminate();
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** A model source the worker can receive: absolute URLs (the worker's base differs). */
function portable(v) {
  if (typeof v === 'string' && Object.hasOwn(BUILTIN_MODELS, v)) return v;
  return absolute(v);
}

/** A URL (string or URL) made absolute against the page's address; anything else as it is. */
function absolute(v) {
  if (v instanceof URL) return v.href;
  if (typeof v !== 'string') return v;
  try {
    return new URL(v, location.href).href;
  } catch {
    return v; // the worker reports it
  }
}

const drawn = ['HTMLImageElement', 'SVGImageElement', 'HTMLCanvasElement', 'OffscreenCanvas', 'HTMLVideoElement', 'VideoFrame'];
const isDrawn = (v) => drawn.some((c) => typeof globalThis[c] === 'function' && v instanceof globalThis[c]);

/**
 * An image for the worker: page-only pixel sources become ImageBitmaps (transferred), URLs
 * absolute; bytes, Blobs, ImageData and ImageBitmaps are copied by structured clone (the
 * caller keeps them).
 */
export async function portableImage(input, index, transfer) {
  if (isDrawn(input)) {
    if (typeof HTMLImageElement !== 'undefined' && input instanceof HTMLImageElement) {
      try {
        await input.decode();
      } catch (e) {
        throw new ActiveShiftError('BAD_IMAGE', `${index === null ? '' : `image ${index}: `}the <img> did not load (${input.currentSrc || input.src || 'no src'})`, { cause: e });
      }
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(input);
    } catch (e) {
      throw new ActiveShiftError('BAD_IMAGE', `${index === null ? '' : `image ${index}: `}cannot read the pixels: ${e.message ?? e}`, { cause: e });
    }
    transfer.push(bitmap);
    return bitmap;
  }
  return absolute(input);
}

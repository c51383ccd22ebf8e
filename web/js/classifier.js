// The Classifier: load an activeshift model, classify images, describe the model, free it.
// Types and examples: index.d.ts; guide: README.md.
import {
  ActiveShiftError,
  BUILTIN_MODELS,
  Batch,
  addImage,
  openEngine,
  readBytes,
  wrapError,
  yieldToEventLoop,
} from './core.js';
import { openRemote, portableImage } from './proxy.js';

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export class Classifier {
  #engine;
  #info;
  #source;
  #queue = Promise.resolve();
  #disposed = false;
  /** With `worker: true`: the classifier in the package's worker (proxy.js), else null. */
  #remote = null;

  /** Use `Classifier.load`. */
  constructor(engine, info, source, token, remote = null) {
    if (token !== LOAD) throw new ActiveShiftError('BAD_ARGUMENT', 'use Classifier.load(source, options) to make a Classifier');
    this.#engine = engine;
    this.#info = info;
    this.#source = source;
    this.#remote = remote;
  }

  /** Load a model: a URL, bytes, a Blob/File, or a built-in model name ('fashion'). */
  static async load(source, options = {}) {
    const { backend, device, kernels, onProgress, maxBytes, signal } = options;
    const builtin = typeof source === 'string' && Object.hasOwn(BUILTIN_MODELS, source);
    if (source === undefined || source === null) {
      throw new ActiveShiftError('BAD_ARGUMENT', `Classifier.load needs a model: a URL, bytes, a Blob or one of ${Object.keys(BUILTIN_MODELS).join(', ')}`);
    }
    const name = builtin ? source : source instanceof URL || typeof source === 'string' ? String(source) : describe(source);
    if (options.worker) {
      const { remote } = await openRemote(source, options);
      return new Classifier(null, null, name, LOAD, remote);
    }
    const [engine, bytes] = await Promise.all([
      openEngine({ backend, device, kernels }),
      readBytes(builtin ? BUILTIN_MODELS[source] : source, { what: 'model', onProgress, maxBytes, signal }),
    ]).catch((e) => {
      throw wrapError(e);
    });
    await yieldToEventLoop();
    let info;
    try {
      info = JSON.parse(engine.load_model(bytes));
    } catch (e) {
      engine.free();
      throw wrapError(e);
    }
    info.adapter = info.backend;
    info.backend = engine.on_gpu() ? 'webgpu' : 'cpu';
    info.fallbackReason = engine.on_gpu() ? null : engine.gpu_error() ?? null;
    return new Classifier(engine, info, name, LOAD);
  }

  /**
   * Classify one image (resolves to a result) or an array of images (one forward pass; resolves
   * to an array of results). `top`: how many classes (default 5).
   */
  classify(input, { top = 5, maxBytes } = {}) {
    if (this.#remote) {
      return this.#enqueue(async () => {
        const transfer = [];
        const many = Array.isArray(input);
        const inputs = many ? input : [input];
        const sent = [];
        for (let i = 0; i < inputs.length; i++) sent.push(await portableImage(inputs[i], many ? i : null, transfer));
        return this.#remote.call('classify', [many ? sent : sent[0], { top, maxBytes }], { transfer });
      });
    }
    return this.#enqueue(async () => {
      const k = checkTop(top, this.#info.classes);
      const many = Array.isArray(input);
      const inputs = many ? input : [input];
      if (inputs.length === 0) throw new ActiveShiftError('BAD_ARGUMENT', 'classify([]) has no image to classify');
      const t0 = now();
      const batch = new Batch();
      try {
        for (let i = 0; i < inputs.length; i++) {
          await addImage(batch, inputs[i], many ? i : null, { maxBytes });
          await yieldToEventLoop();
        }
        const t1 = now();
        this.#alive();
        const out = JSON.parse(await this.#engine.classify(batch, k));
        const t2 = now();
        const results = out.results.map((r) => ({
          top: r.top.map((t) => ({ index: t.class, label: t.label, probability: t.prob })),
          backend: this.#info.backend,
          adapter: this.#info.adapter,
          timings: {
            decodeMs: t1 - t0,
            preprocessMs: out.prepare_ms,
            forwardMs: out.forward_ms,
            totalMs: t2 - t0,
            firstRun: out.first,
          },
        }));
        return many ? results : results[0];
      } catch (e) {
        throw wrapError(e);
      } finally {
        batch.free();
      }
    });
  }

  /** Model name, labels, input size and preprocessing, parameter count, backend and adapter. */
  async info() {
    this.#alive();
    if (this.#remote) return { ...(await this.#remote.call('info')), source: this.#source };
    const i = this.#info;
    return {
      name: i.name,
      source: this.#source,
      classes: i.classes,
      labels: [...i.labels],
      inputSize: { channels: i.input[0], height: i.input[1], width: i.input[2] },
      preprocess: {
        resizeShort: i.preprocess.resize_short ?? null,
        crop: { height: i.preprocess.crop[0], width: i.preprocess.crop[1] },
        color: i.preprocess.color,
        mean: [...i.preprocess.mean],
        scale: [...i.preprocess.scale],
      },
      parameters: i.params,
      shiftLayers: i.shift_layers,
      backend: i.backend,
      adapter: i.adapter,
      kernels: i.kernels || null,
      fallbackReason: i.fallbackReason,
    };
  }

  /** The learned shifts of every Active Shift layer, in execution order. */
  async shifts() {
    this.#alive();
    if (this.#remote) return this.#remote.call('shifts');
    try {
      return JSON.parse(this.#engine.shifts()).map((l) => ({
        name: l.name,
        channels: l.channels,
        stride: l.stride,
        x: Float32Array.from(l.x),
        y: Float32Array.from(l.y),
      }));
    } catch (e) {
      throw wrapError(e);
    }
  }

  /**
   * Measure which kernel variant is fastest for every op shape of the model on this adapter
   * (WebGPU only) and use the fastest from then on. Resolves to the measurement's report.
   */
  tune({ perKeyMs = 150, totalMs = 120_000, onProgress } = {}) {
    if (this.#remote) {
      const options = { perKeyMs, totalMs };
      return this.#enqueue(() => this.#remote.call('tune', [options], { onProgress }));
    }
    return this.#enqueue(async () => {
      this.#alive();
      try {
        const json = await this.#engine.tune(perKeyMs, totalMs, (i, n, key) => onProgress?.({ index: i, count: n, key }));
        return JSON.parse(json);
      } catch (e) {
        throw wrapError(e);
      }
    });
  }

  /** The kernel decisions measured so far, as text to keep (e.g. in localStorage). */
  async tuning() {
    this.#alive();
    if (this.#remote) return this.#remote.call('tuning');
    return { count: this.#engine.tuned(), json: this.#engine.tuning_json() };
  }

  /** Use decisions kept from an earlier `tuning()` on the same adapter; resolves to their count. */
  useTuning(json) {
    if (this.#remote) return this.#enqueue(() => this.#remote.call('useTuning', [json]));
    return this.#enqueue(async () => {
      this.#alive();
      try {
        return this.#engine.use_tuning(json);
      } catch (e) {
        throw wrapError(e);
      }
    });
  }

  /** Free the model and its GPU buffers. A second call, and any use after, throw DISPOSED. */
  async dispose() {
    this.#alive();
    this.#disposed = true;
    const engine = this.#engine;
    // After the calls already queued.
    await this.#queue;
    if (this.#remote) {
      try {
        await this.#remote.call('dispose');
      } finally {
        this.#remote.terminate();
      }
      return;
    }
    engine.dispose();
    engine.free();
  }

  #alive() {
    if (this.#disposed) throw new ActiveShiftError('DISPOSED', 'this Classifier was disposed');
  }

  /** Run calls one after another (the engine runs one job at a time). */
  #enqueue(job) {
    try {
      this.#alive();
    } catch (e) {
      return Promise.reject(e);
    }
    const run = this.#queue.then(job);
    this.#queue = run.catch(() => {});
    return run;
  }
}

const LOAD = Symbol('load');

function checkTop(top, classes) {
  if (!Number.isInteger(top) || top < 1) {
    throw new ActiveShiftError('BAD_ARGUMENT', `top must be a positive integer, not ${top}`);
  }
  return Math.min(top, classes);
}

function describe(v) {
  if (typeof File !== 'undefined' && v instanceof File) return v.name;
  return v?.constructor?.name ?? typeof v;
}

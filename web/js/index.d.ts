// Type declarations of the `activeshift` npm package (hand-written; the implementation is
// index.js over the wasm-bindgen module activeshift_web.js).

/** Stable codes of {@link ActiveShiftError}. */
export type ErrorCode =
  /** The bytes are not an activeshift `.safetensors` model. */
  | 'BAD_MODEL'
  /** An input is not a readable or usable image (`message` says which, in a batch its index). */
  | 'BAD_IMAGE'
  /** An argument has the wrong type or value (e.g. `top: 0`, an unsupported input). */
  | 'BAD_ARGUMENT'
  /** A URL could not be fetched (network error, HTTP status) or a file not read. */
  | 'FETCH_FAILED'
  /** A source is larger than `maxBytes`. */
  | 'TOO_LARGE'
  /** `backend: 'webgpu'` was asked for but WebGPU is unusable here. */
  | 'NO_WEBGPU'
  /** The GPU failed (device lost, out of memory), or the given GPUDevice cannot be used. */
  | 'GPU_ERROR'
  /** The classifier was disposed. */
  | 'DISPOSED'
  /** No model is loaded in the engine (internal state; should not reach users). */
  | 'NO_MODEL'
  /** The WebAssembly module could not be loaded. */
  | 'WASM_LOAD'
  /** With `worker: true`: the package's worker could not start (e.g. worker.js not served) or died. */
  | 'WORKER_FAILED'
  /** Anything else. */
  | 'INTERNAL';

/**
 * Every error the package throws or rejects with.
 *
 * @example
 * try {
 *   await Classifier.load('https://example.com/missing.safetensors');
 * } catch (e) {
 *   if (e instanceof ActiveShiftError && e.code === 'FETCH_FAILED') console.warn(e.message);
 * }
 */
export class ActiveShiftError extends Error {
  readonly name: 'ActiveShiftError';
  readonly code: ErrorCode;
}

/** Where a model comes from: a URL, the file's bytes, a Blob/File, or a built-in name. */
export type ModelSource = string | URL | ArrayBuffer | ArrayBufferView | Blob | BuiltinModel;

/** Models shipped in the package (fetched from the package's `models/` only when asked for). */
export type BuiltinModel = 'fashion';

/** The built-in models' files. */
export const BUILTIN_MODELS: { readonly [name in BuiltinModel]: URL };

/**
 * A WebGPU `GPUDevice`, typed structurally so that the declarations need no `@webgpu/types`
 * (TypeScript's DOM library has no WebGPU types); any `GPUDevice` fits.
 */
export interface GPUDeviceLike {
  readonly features: ReadonlySet<string>;
  readonly limits: object;
  readonly queue: object;
}

/** `'auto'`: WebGPU where usable, else the CPU engine. */
export type Backend = 'auto' | 'webgpu' | 'cpu';

export interface LoadOptions {
  /** Default `'auto'`. `'webgpu'` rejects with `NO_WEBGPU` where WebGPU is unusable. */
  backend?: Backend;
  /** Run on this `GPUDevice` of the page's own (it must have WebGPU's default limits). */
  device?: GPUDeviceLike;
  /** Called as a model downloads; `total` is null when the server does not send a length. */
  onProgress?: (progress: { loaded: number; total: number | null }) => void;
  /** Largest model (and image) read, in bytes; default 1 GiB. */
  maxBytes?: number;
  /** Cancels the download. */
  signal?: AbortSignal;
  /** Fix the kernel family (`'gpu'`: hardware-GPU kernels, `'cpu'`: CPU-adapter kernels). */
  kernels?: 'gpu' | 'cpu';
  /**
   * Run the classifier in a module Web Worker that the package spawns
   * (`new URL('./worker.js', import.meta.url)`), with the same API: loading and classifying
   * then never hold the page's thread (the CPU engine's forward pass and the WebGPU upload
   * included). Pixel sources (`<img>`, canvases, video) become ImageBitmaps that are
   * transferred. Browsers only (`BAD_ARGUMENT` in Node.js, and with `device`); a worker that
   * cannot start rejects with `WORKER_FAILED`. Default false.
   *
   * @example
   * const classifier = await Classifier.load('/models/w32.safetensors', { worker: true });
   * const { top } = await classifier.classify(document.querySelector('img'));
   */
  worker?: boolean;
}

/**
 * One image: encoded bytes (JPEG, PNG, GIF, BMP, WebP: an ArrayBuffer, typed array, Blob or
 * File, or a URL to fetch), decoded as the native CLI decodes them, or pixels: `ImageData`,
 * a canvas, an `<img>`, an `ImageBitmap`, the current frame of a `<video>` or a `VideoFrame`
 * (drawn at its natural size). Node accepts bytes, URLs, file paths and ImageData-like objects.
 */
export type ImageInput =
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | string
  | URL
  | ImageData
  | { data: Uint8ClampedArray | Uint8Array; width: number; height: number }
  | HTMLImageElement
  | HTMLCanvasElement
  | OffscreenCanvas
  | ImageBitmap
  | HTMLVideoElement
  | VideoFrame;

export interface ClassifyOptions {
  /** How many classes, best first (default 5; at most the model's classes). */
  top?: number;
  /** Largest encoded image read, in bytes; default 1 GiB. */
  maxBytes?: number;
}

export interface TopClass {
  /** Class index. */
  index: number;
  /** Class name. */
  label: string;
  /** Softmax probability. */
  probability: number;
}

export interface Classification {
  /** The best classes, best first. */
  top: TopClass[];
  /** Where it ran. */
  backend: 'webgpu' | 'cpu';
  /** The WebGPU adapter's name (`'unnamed webgpu adapter'` where the browser hides it), or `'cpu'`. */
  adapter: string;
  /** Milliseconds. In a batch every result has the batch's timings. */
  timings: {
    /** Reading and decoding (or drawing) the images. */
    decodeMs: number;
    /** Resizing, cropping and normalising. */
    preprocessMs: number;
    /** The forward pass, upload and readback included. */
    forwardMs: number;
    /** All of it, from the call. */
    totalMs: number;
    /** The model's first run (on WebGPU it includes compiling the pipelines). */
    firstRun: boolean;
  };
}

export interface ModelInfo {
  /** Architecture name, e.g. `as-resnet-w32`. */
  name: string;
  /** What it was loaded from (URL, built-in name, or the kind of object). */
  source: string;
  classes: number;
  /** Class names, one per class. */
  labels: string[];
  inputSize: { channels: number; height: number; width: number };
  /** How an image becomes the input: resize the short side, centre crop, `(v - mean) * scale`. */
  preprocess: {
    resizeShort: number | null;
    crop: { height: number; width: number };
    color: 'rgb' | 'bgr' | 'gray';
    mean: number[];
    scale: number[];
  };
  /** Learnable parameters. */
  parameters: number;
  /** Active Shift layers (entries of `shifts()`). */
  shiftLayers: number;
  backend: 'webgpu' | 'cpu';
  adapter: string;
  /** The kernels inference uses on this adapter; null on the CPU. */
  kernels: string | null;
  /** Why the CPU engine runs when `backend: 'auto'` was asked for; null on WebGPU. */
  fallbackReason: string | null;
}

/** The learned shifts of one Active Shift layer: channel `i` reads its input from `(x[i], y[i])`. */
export interface ShiftLayer {
  name: string;
  channels: number;
  stride: number;
  x: Float32Array;
  y: Float32Array;
}

/** What `tune()` measured. */
export interface TuneReport {
  clock: string;
  shapes: number;
  tuned: number;
  ms: number;
  entries: { key: string; rule: string; chosen: string; micros: Record<string, number> }[];
}

/** An Active Shift network ready to classify images. */
export class Classifier {
  private constructor();

  /**
   * Load a model and open its engine.
   *
   * @example
   * import { Classifier } from 'activeshift';
   * const fashion = await Classifier.load('fashion');                       // built in
   * const w32 = await Classifier.load('/models/w32.safetensors', {
   *   backend: 'auto',
   *   onProgress: ({ loaded, total }) => console.log(loaded, total),
   * });
   * const mine = await Classifier.load(fileInput.files[0], { backend: 'cpu' });
   * const shared = await Classifier.load(bytes, { device: myGpuDevice });
   */
  static load(source: ModelSource, options?: LoadOptions): Promise<Classifier>;

  /**
   * Classify one image, or a batch in one forward pass.
   *
   * @example
   * const { top } = await classifier.classify(document.querySelector('img'), { top: 3 });
   * console.log(`${top[0].label}: ${(top[0].probability * 100).toFixed(1)}%`);
   * const [a, b] = await classifier.classify([blobA, canvasB]);
   */
  classify(input: ImageInput, options?: ClassifyOptions): Promise<Classification>;
  classify(inputs: ImageInput[], options?: ClassifyOptions): Promise<Classification[]>;

  /**
   * What the model is and where it runs.
   *
   * @example
   * const { name, labels, inputSize, parameters, adapter } = await classifier.info();
   */
  info(): Promise<ModelInfo>;

  /**
   * The learned shifts, one entry per Active Shift layer in execution order (for plots).
   *
   * @example
   * for (const layer of await classifier.shifts()) plot(layer.name, layer.x, layer.y);
   */
  shifts(): Promise<ShiftLayer[]>;

  /**
   * WebGPU only: time every kernel variant for each op shape of the model and use the fastest.
   *
   * @example
   * const report = await classifier.tune({ onProgress: ({ index, count }) => bar.value = index / count });
   * localStorage.setItem('tuning', (await classifier.tuning()).json);
   */
  tune(options?: {
    perKeyMs?: number;
    totalMs?: number;
    onProgress?: (p: { index: number; count: number; key: string }) => void;
  }): Promise<TuneReport>;

  /**
   * The decisions measured so far (`json` is tied to this adapter, driver and kernels).
   *
   * @example
   * const { count, json } = await classifier.tuning();
   */
  tuning(): Promise<{ count: number; json: string }>;

  /**
   * Use decisions kept from `tuning()`; rejects (`BAD_ARGUMENT`) when they were measured on
   * another adapter, driver or kernel version. Resolves to their count.
   *
   * @example
   * await classifier.useTuning(localStorage.getItem('tuning'));
   */
  useTuning(json: string): Promise<number>;

  /**
   * Free the model and its GPU buffers (after the calls already made). A second call, and any
   * call after, rejects with code `DISPOSED`.
   *
   * @example
   * await classifier.dispose();
   */
  dispose(): Promise<void>;
}

/**
 * Load the WebAssembly module now (`Classifier.load` does it when needed), optionally from
 * elsewhere than beside index.js: for bundlers that do not copy `activeshift_web_bg.wasm`.
 *
 * @example
 * import { init } from 'activeshift';
 * await init(new URL('/assets/activeshift_web_bg.wasm', location.href));
 */
export function init(wasm?: string | URL | ArrayBuffer | Uint8Array | WebAssembly.Module): Promise<void>;

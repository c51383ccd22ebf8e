// activeshift for JavaScript: Active Shift networks on WebGPU (or the CPU engine in
// WebAssembly) in browsers, workers and Node.js. API and examples: index.d.ts and README.md.
export { ActiveShiftError, BUILTIN_MODELS, init } from './core.js';
export { Classifier } from './classifier.js';

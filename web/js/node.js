// The Node.js entry point (package.json "exports" picks it under the "node" condition): the
// same API as index.js, with file paths and file: URLs read from disk. Node has no WebGPU:
// models run on the CPU engine in WebAssembly.
import { readFile } from 'node:fs/promises';
import { useFileReader } from './core.js';

useFileReader(readFile);

export * from './index.js';

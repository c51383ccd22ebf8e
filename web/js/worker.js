// The worker that `Classifier.load(source, { worker: true })` spawns (proxy.js is the page's
// side): one classifier, called by message. Each message is `{ id, method, args }`; the answer
// is `{ id, value }` or `{ id, error: { code, message } }`, with `{ id, progress }` before it
// for calls that report progress. Results' Float32Arrays (shifts) are transferred back.
import { Classifier } from './classifier.js';

let classifier = null;
const aborts = new Map();

const post = (msg, transfer) => self.postMessage(msg, transfer ?? []);

self.onmessage = async ({ data: { id, method, args } }) => {
  if (method === 'abort') {
    aborts.get(args[0])?.abort();
    return;
  }
  try {
    let value;
    let transfer = [];
    const progress = (p) => post({ id, progress: p });
    switch (method) {
      case 'load': {
        const [source, { signal, ...options }] = args;
        const abort = signal ? new AbortController() : null;
        if (abort) aborts.set(id, abort);
        try {
          classifier = await Classifier.load(source, { ...options, onProgress: progress, signal: abort?.signal });
        } finally {
          aborts.delete(id);
        }
        value = [await classifier.info(), (await classifier.info()).source];
        break;
      }
      case 'classify':
        value = await classifier.classify(...args);
        break;
      case 'tune': {
        const [options = {}] = args;
        value = await classifier.tune({ ...options, onProgress: progress });
        break;
      }
      case 'shifts':
        value = await classifier.shifts();
        transfer = value.flatMap((l) => [l.x.buffer, l.y.buffer]);
        break;
      case 'info':
      case 'tuning':
      case 'useTuning':
      case 'dispose':
        value = await classifier[method](...args);
        break;
      default:
        throw Object.assign(new Error(`no such call: ${method}`), { code: 'INTERNAL' });
    }
    post({ id, value }, transfer);
  } catch (e) {
    post({ id, error: { code: typeof e?.code === 'string' ? e.code : 'INTERNAL', message: e?.message ?? String(e) } });
  }
};

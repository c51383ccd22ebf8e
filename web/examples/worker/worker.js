// A module worker that classifies what the page posts to it: { model, image } where image is a
// Blob, an ImageBitmap or bytes. WebGPU where the browser has it in workers, else the CPU engine;
// the page's thread stays free either way.
import { Classifier } from 'activeshift';

let classifier = null;
self.onmessage = async ({ data }) => {
  try {
    classifier ??= await Classifier.load(data.model);
    const result = await classifier.classify(data.image, { top: data.top ?? 5 });
    self.postMessage({ result });
  } catch (e) {
    self.postMessage({ error: { code: e.code, message: e.message } });
  }
};

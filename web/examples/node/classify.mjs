// Classify image files on the CPU engine in Node.js (no browser, no GPU):
//   node classify.mjs MODEL.safetensors IMAGE.png [IMAGE.jpg ...]   (MODEL may be 'fashion')
// Prints one JSON line per image.
import { Classifier } from 'activeshift';

const [model, ...images] = process.argv.slice(2);
if (!model || images.length === 0) {
  console.error('usage: node classify.mjs MODEL IMAGE...');
  process.exit(2);
}
const classifier = await Classifier.load(model);
for (const image of images) {
  const { top, backend, timings } = await classifier.classify(image, { top: 5 });
  console.log(JSON.stringify({ image, backend, top, forwardMs: timings.forwardMs }));
}
await classifier.dispose();

// Classify the page's <img> with a model (?model=URL, else the built-in Fashion-MNIST one).
import { Classifier } from 'activeshift';

const params = new URLSearchParams(location.search);
const photo = document.getElementById('photo');
if (params.get('image')) photo.src = params.get('image');
const out = document.getElementById('out');
try {
  const classifier = await Classifier.load(params.get('model') ?? 'fashion');
  const { top, backend, adapter } = await classifier.classify(photo, { top: 5 });
  out.textContent = JSON.stringify({ backend, adapter, top }, null, 1);
} catch (e) {
  out.textContent = `${e.code}: ${e.message}`;
}

// The page's side: start the worker, post an image, print the answer. Module workers do not
// read the page's import map: a bundler resolves 'activeshift' in worker.js, or write its path.
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const image = await (await fetch('photo.jpg')).blob();
worker.postMessage({ model: 'fashion', image });
worker.onmessage = ({ data }) => {
  document.getElementById('out').textContent = JSON.stringify(data.error ?? data.result, null, 1);
};

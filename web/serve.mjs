// A small static file server for the demo (Node's standard library only).
//
//   node web/serve.mjs [--port 8000] [--mount /PREFIX=DIR ...]
//
// Serves web/www/ at http://localhost:PORT/ (WebGPU needs a secure context; localhost is one),
// with the right MIME type for .wasm and no caching. Each --mount serves another directory
// under a URL prefix (the browser test mounts its generated model and test images this way).
// Listens on the loopback interface only. Also importable: `startServer({ port, mounts })`.
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const wwwDir = join(here, 'www');

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.bmp': 'image/bmp',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

/** The file for a URL path, or null when it is outside every served directory. */
function resolvePath(urlPath, mounts) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  for (const [prefix, dir] of mounts) {
    if (path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : prefix + '/')) {
      const rest = normalize(path.slice(prefix.length)).replace(/^([/\\])+/, '');
      const file = resolve(dir, rest);
      const root = resolve(dir);
      if (file !== root && !file.startsWith(root + sep)) return null;
      return file;
    }
  }
  return null;
}

/**
 * Start serving. `mounts` maps URL prefixes to directories (`/` is web/www unless given).
 * Resolves to `{ url, port, close() }`.
 */
export function startServer({ port = 8000, host = '127.0.0.1', mounts = {} } = {}) {
  const table = Object.entries({ ...mounts, '/': mounts['/'] ?? wwwDir })
    .sort((a, b) => b[0].length - a[0].length); // longest prefix first
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let file = resolvePath(url.pathname, table);
    let stat = null;
    try {
      if (file) {
        stat = statSync(file);
        if (stat.isDirectory()) {
          file = join(file, 'index.html');
          stat = statSync(file);
        }
      }
    } catch {
      stat = null;
    }
    if (!file || !stat || !stat.isFile() || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(file ? 404 : 403, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(file ? 'not found\n' : 'forbidden\n');
      return;
    }
    res.writeHead(200, {
      'content-type': types[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': stat.size,
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => {
      const actual = server.address().port;
      ok({
        port: actual,
        url: `http://localhost:${actual}/`,
        close: () => new Promise((done) => server.close(done)),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  let port = 8000;
  const mounts = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--mount') {
      const [prefix, dir] = (args[++i] ?? '').split('=');
      if (!prefix?.startsWith('/') || !dir) throw new Error('--mount wants /PREFIX=DIR');
      mounts[prefix] = dir;
    } else if (args[i] === '-h' || args[i] === '--help') {
      console.log('usage: node web/serve.mjs [--port 8000] [--mount /PREFIX=DIR ...]');
      process.exit(0);
    } else throw new Error(`unknown argument ${args[i]}`);
  }
  const s = await startServer({ port, mounts });
  console.log(`serving ${wwwDir} at ${s.url} (Ctrl-C stops)`);
}

// Draws the demo's bundled sample images (no third-party pictures): two ImageNet-style photos
// made of simple shapes (an orange, a crossword grid) and two Fashion-MNIST-style silhouettes
// (a T-shirt and a sneaker, light on black). Deterministic; uses only Node's standard library.
//
//   node web/tools/make-samples.mjs [OUT_DIR]     (default: web/www/samples)
import { deflateSync } from 'node:zlib';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2] ?? join(here, '..', 'www', 'samples');

// --- PNG encoding (8-bit RGB, no interlace) ---
const crcTable = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function png(width, height, rgb) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    rgb.copy(raw, y * (width * 3 + 1) + 1, y * width * 3, (y + 1) * width * 3);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// --- rendering: colour(u, v) on [0,1]^2, 4x4 supersampling ---
function render(size, colour) {
  const rgb = Buffer.alloc(size * size * 3);
  const ss = 4;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const acc = [0, 0, 0];
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const c = colour((x + (sx + 0.5) / ss) / size, (y + (sy + 0.5) / ss) / size);
          for (let i = 0; i < 3; i++) acc[i] += c[i];
        }
      }
      for (let i = 0; i < 3; i++) {
        rgb[(y * size + x) * 3 + i] = Math.max(0, Math.min(255, Math.round(acc[i] / (ss * ss))));
      }
    }
  }
  return rgb;
}

// Smooth value noise from a fixed hash, for textures.
function hash(ix, iy) {
  let h = (ix * 374761393 + iy * 668265263) | 0;
  h = Math.imul(h ^ (h >>> 13), 1274126177);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}
function noise(u, v) {
  const x0 = Math.floor(u), y0 = Math.floor(v);
  const fx = u - x0, fy = v - y0;
  const sx = fx * fx * (3 - 2 * fx), sy = fy * fy * (3 - 2 * fy);
  const a = hash(x0, y0), b = hash(x0 + 1, y0), c = hash(x0, y0 + 1), d = hash(x0 + 1, y0 + 1);
  return a + (b - a) * sx + (c - a) * sy + (a - b - c + d) * sx * sy;
}
const mix = (a, b, t) => a.map((ai, i) => ai + (b[i] - ai) * t);

function orange(u, v) {
  // Table with a soft shadow, an orange with dimpled peel and a stalk with a leaf.
  const table = mix([236, 226, 208], [205, 190, 166], v);
  let c = table;
  const dx = u - 0.5, dy = v - 0.53, r = 0.34;
  const shadow = Math.hypot(dx - 0.05, (dy - 0.06) * 1.6);
  if (shadow < r * 1.05) c = mix(c, [120, 100, 80], 0.35 * (1 - shadow / (r * 1.05)));
  const d = Math.hypot(dx, dy);
  if (d < r) {
    const z = Math.sqrt(1 - (d / r) ** 2);
    const light = Math.max(0, (-dx * 0.5 - dy * 0.6 + z * 0.62) / Math.hypot(0.5, 0.6, 0.62));
    const dimple = 0.85 + 0.15 * noise(u * 90, v * 90);
    c = mix([150, 50, 0], [255, 150, 20], light * dimple);
    const spec = Math.max(0, light - 0.93) * 12;
    c = mix(c, [255, 235, 200], Math.min(1, spec));
  }
  const lx = u - 0.56, ly = v - 0.2;
  if (Math.hypot(lx * 1.0 - ly * 0.6, (lx * 0.6 + ly) * 2.4) < 0.07) c = [60, 130, 40];
  if (Math.abs(u - 0.5) < 0.012 && v > 0.16 && v < 0.21) c = [90, 70, 30];
  return c;
}

function crossword(u, v) {
  // A 13 x 13 crossword grid (symmetric black squares) on slightly grey paper.
  const n = 13, m = 0.08;
  const paper = mix([246, 244, 236], [228, 226, 218], noise(u * 8, v * 8));
  if (u < m || u > 1 - m || v < m || v > 1 - m) return paper;
  const gx = ((u - m) / (1 - 2 * m)) * n, gy = ((v - m) / (1 - 2 * m)) * n;
  const i = Math.min(n - 1, Math.floor(gx)), j = Math.min(n - 1, Math.floor(gy));
  const line = Math.min(gx - Math.floor(gx), Math.ceil(gx) - gx, gy - Math.floor(gy), Math.ceil(gy) - gy);
  if (line < 0.06) return [25, 25, 25];
  const a = Math.min(i, n - 1 - i), b = Math.min(j, n - 1 - j);
  const black = hash(a * 7 + b, a + b * 5) < 0.22 || (i === 6 && j % 4 === 1);
  return black ? [20, 20, 20] : [250, 250, 250];
}

// Fashion-MNIST style: light grey garment with a little texture on black.
function garment(inside) {
  return (u, v) => {
    if (!inside(u, v)) return [0, 0, 0];
    const g = 150 + 60 * noise(u * 40, v * 40) + 30 * (1 - v);
    return [g, g, g];
  };
}
const tshirt = garment((u, v) => {
  const body = Math.abs(u - 0.5) < 0.22 && v > 0.2 && v < 0.9;
  const sleeve = v > 0.2 && v < 0.42 && Math.abs(u - 0.5) < 0.22 + (v - 0.2) * 0.2 + 0.16 && Math.abs(u - 0.5) < 0.45 - (v - 0.2) * 0.8;
  const shoulder = v > 0.16 && v <= 0.2 && Math.abs(u - 0.5) < 0.3;
  const neck = Math.hypot(u - 0.5, (v - 0.15) * 1.2) < 0.09;
  return (body || sleeve || shoulder) && !neck;
});
// Side view of a low sneaker: a sole, an upper whose top line runs from the heel collar down
// to a rounded toe, and darker lace marks.
const sneakerTop = [[0.08, 0.36], [0.3, 0.3], [0.42, 0.36], [0.55, 0.4], [0.86, 0.53], [0.94, 0.64]];
function sneakerTopAt(u) {
  for (let i = 1; i < sneakerTop.length; i++) {
    const [u0, v0] = sneakerTop[i - 1], [u1, v1] = sneakerTop[i];
    if (u <= u1) return v0 + ((v1 - v0) * (u - u0)) / (u1 - u0);
  }
  return 1;
}
function sneaker(u, v) {
  const sole = v > 0.64 && v < 0.73 && u > 0.06 && u < 0.95;
  const upper = u > 0.08 && u < 0.94 && v >= sneakerTopAt(u) && v <= 0.64;
  if (!sole && !upper) return [0, 0, 0];
  if (sole) return [235, 235, 235];
  const lace = u > 0.45 && u < 0.75 && Math.abs(v - sneakerTopAt(u) - 0.03) < 0.015 && (u * 30) % 1 < 0.5;
  const g = lace ? 70 : 120 + 50 * noise(u * 40, v * 40);
  return [g, g, g];
}

mkdirSync(outDir, { recursive: true });
const samples = [
  ['orange.png', 224, orange],
  ['crossword.png', 224, crossword],
  ['tshirt.png', 112, tshirt],
  ['sneaker.png', 112, sneaker],
];
for (const [name, size, f] of samples) {
  const file = join(outDir, name);
  const data = png(size, size, render(size, f));
  writeFileSync(file, data);
  console.log(`${file}: ${size}x${size}, ${data.length} bytes`);
}

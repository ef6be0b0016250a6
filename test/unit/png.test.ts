/**
 * test/png.ts, the tests' PNG decoder, on images encoded here with every row filter of the PNG
 * specification, so that a screenshot's pixels are read right whichever filters the browser chose.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import { countColour, decodePng } from '../png.ts';

function chunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])));
  return Buffer.concat([head, body, crc]);
}

/** Encodes pixels (channels bytes each) with filter `filters[y]` on row y. */
function encodePng(width: number, height: number, channels: 3 | 4, pixels: number[], filters: number[]): Buffer {
  const stride = width * channels;
  const rows: number[] = [];
  for (let y = 0; y < height; y++) {
    const at = (i: number, dy = 0) => (i < 0 || y + dy < 0 ? 0 : pixels[(y + dy) * stride + i]);
    rows.push(filters[y]);
    for (let i = 0; i < stride; i++) {
      const [a, b, c] = [at(i - channels), at(i, -1), at(i - channels, -1)];
      const p = a + b - c;
      const paeth =
        Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      rows.push((at(i) - [0, a, b, (a + b) >> 1, paeth][filters[y]] + 256) & 255);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, channels === 3 ? 2 : 6, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('decodePng reads RGB and RGBA rows under each of the five filters', () => {
  const width = 4;
  const height = 5;
  for (const channels of [3, 4] as const) {
    const pixels = Array.from({ length: width * height * channels }, (_, i) => (i * 37 + (i % 7) * 91) & 255);
    const image = decodePng(encodePng(width, height, channels, pixels, [0, 1, 2, 3, 4]));
    assert.deepEqual([image.width, image.height], [width, height]);
    const expected = Array.from({ length: width * height }, (_, p) => [
      ...pixels.slice(p * channels, p * channels + 3),
      channels === 4 ? pixels[p * 4 + 3] : 255,
    ]).flat();
    assert.deepEqual([...image.rgba], expected, `${channels} channels`);
  }
});

test('countColour counts the pixels of a colour inside a box only', () => {
  // 3 x 2 RGB: red, red, blue / red, white, red.
  const pixels = [255, 0, 0, 255, 0, 0, 0, 0, 255, 250, 4, 3, 255, 255, 255, 255, 0, 0];
  const image = decodePng(encodePng(3, 2, 3, pixels, [1, 4]));
  assert.equal(countColour(image, '#ff0000', { x: 0, y: 0, width: 3, height: 2 }), 4);
  assert.equal(countColour(image, '#ff0000', { x: 1, y: 0, width: 2, height: 2 }), 2);
  assert.equal(countColour(image, '#ff0000', { x: 0, y: 0, width: 3, height: 2 }, 0), 3);
  assert.throws(() => decodePng(Buffer.from('GIF89a')), /not a PNG/);
});

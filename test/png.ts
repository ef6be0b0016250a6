/**
 * A PNG's pixels, decoded with node:zlib alone: enough for a browser's screenshots (8-bit RGB or
 * RGBA, not interlaced), so that tests can look at what was drawn without an image library.
 */
import { inflateSync } from 'node:zlib';

export interface Image {
  width: number;
  height: number;
  /** Four bytes a pixel, row after row. */
  rgba: Buffer;
}

const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);

/** The Paeth predictor of the PNG specification (9.4). */
function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

export function decodePng(png: Buffer): Image {
  if (!png.subarray(0, 8).equals(signature)) throw new Error('not a PNG');
  let header: Buffer | undefined;
  const data: Buffer[] = [];
  for (let at = 8; at + 8 <= png.length;) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') header = body;
    else if (type === 'IDAT') data.push(body);
    else if (type === 'IEND') break;
    at += 12 + length;
  }
  if (!header) throw new Error('a PNG without IHDR');
  const [width, height, depth, colourType, interlace] = [header.readUInt32BE(0), header.readUInt32BE(4), header[8], header[9], header[12]];
  const channels = colourType === 2 ? 3 : colourType === 6 ? 4 : 0;
  if (depth !== 8 || channels === 0 || interlace !== 0)
    throw new Error(
      `a PNG of bit depth ${depth}, colour type ${colourType}, interlace ${interlace}: only 8-bit RGB or RGBA, not interlaced`,
    );
  const raw = inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const rgba = Buffer.alloc(width * height * 4);
  let previous = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const row = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const b = previous[i];
      const c = i >= channels ? previous[i - channels] : 0;
      const predicted = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      if (predicted === undefined) throw new Error(`row ${y}: unknown filter ${filter}`);
      row[i] = (row[i] + predicted) & 255;
    }
    for (let x = 0; x < width; x++) {
      row.copy(rgba, (y * width + x) * 4, x * channels, x * channels + 3);
      rgba[(y * width + x) * 4 + 3] = channels === 4 ? row[x * 4 + 3] : 255;
    }
    previous = row;
  }
  return { width, height, rgba };
}

/** How many pixels of the box (x, y, width, height; clipped to the image) are within `tolerance` of the colour (#rrggbb) in each channel. */
export function countColour(
  image: Image,
  colour: string,
  box: { x: number; y: number; width: number; height: number },
  tolerance = 8,
): number {
  const want = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  let n = 0;
  for (let y = Math.max(0, Math.ceil(box.y)); y < Math.min(image.height, Math.floor(box.y + box.height)); y++) {
    for (let x = Math.max(0, Math.ceil(box.x)); x < Math.min(image.width, Math.floor(box.x + box.width)); x++) {
      const at = (y * image.width + x) * 4;
      if (want.every((v, c) => Math.abs(image.rgba[at + c] - v) <= tolerance)) n++;
    }
  }
  return n;
}

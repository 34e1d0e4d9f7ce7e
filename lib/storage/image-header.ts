// Spark's image schema (ImageSchema, Spark 3.5) from file headers alone:
// height, width, nChannels and the OpenCV mode without decoding pixels.
// Spark decodes with javax.imageio and derives the channels from the decoded
// image's colour model: grey colour space -> 1 (CV_8UC1), else alpha -> 4
// (CV_8UC4), else 3 (CV_8UC3); anything ImageIO cannot read is an invalid row
// (-1, -1, -1, -1). We restate that per format from the header fields:
//   JPEG  baseline/extended/progressive 8-bit (SOF0-2), 1 or 3 components;
//         CMYK/YCCK (4 components), 12-bit, lossless and arithmetic-coded
//         JPEGs are invalid, as ImageIO's reader refuses them.
//   PNG   grey (+alpha) -> 1; RGB or palette -> 3, or 4 with alpha or tRNS.
//   GIF   first frame's size; palette -> 3, or 4 with a transparent index.
//   BMP   3, or 4 for bit-field images with an alpha mask.
// Other formats (WebP, TIFF, ...) are invalid: Spark's reader (Java 8 ImageIO) has none of them.

export const OCV_MODES = { CV_8U: 0, CV_8UC1: 0, CV_8UC3: 16, CV_8UC4: 24, Undefined: -1 } as const;

export interface ImageSchemaRow {
  origin: string;
  height: number;
  width: number;
  nChannels: number;
  mode: number;
}

export type HeaderResult =
  | { kind: 'ok'; height: number; width: number; nChannels: 1 | 3 | 4; format: 'jpeg' | 'png' | 'gif' | 'bmp' }
  | { kind: 'invalid'; reason: string }
  | { kind: 'need'; bytes: number };

export function invalidImageRow(origin: string): ImageSchemaRow {
  return { origin, height: -1, width: -1, nChannels: -1, mode: OCV_MODES.Undefined };
}

export function imageRow(origin: string, h: HeaderResult): ImageSchemaRow {
  if (h.kind !== 'ok') return invalidImageRow(origin);
  const mode = h.nChannels === 1 ? OCV_MODES.CV_8UC1 : h.nChannels === 4 ? OCV_MODES.CV_8UC4 : OCV_MODES.CV_8UC3;
  return { origin, height: h.height, width: h.width, nChannels: h.nChannels, mode };
}

/**
 * Parses the first bytes of a file. `complete` says `buf` is the whole file;
 * otherwise the result may be `need` (read at least `bytes` and retry).
 */
export function parseImageHeader(buf: Uint8Array, complete: boolean): HeaderResult {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (n: number): HeaderResult =>
    complete ? { kind: 'invalid', reason: 'truncated header' } : { kind: 'need', bytes: Math.max(n, b.length * 2) };
  if (b.length < 2) return need(64);
  if (b[0] === 0xff && b[1] === 0xd8) return parseJpeg(b, need);
  if (b.length < 8) return need(64);
  if (b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return parsePng(b, need);
  if (b.toString('latin1', 0, 6) === 'GIF87a' || b.toString('latin1', 0, 6) === 'GIF89a') return parseGif(b, need);
  if (b[0] === 0x42 && b[1] === 0x4d) return parseBmp(b, need);
  return { kind: 'invalid', reason: 'not a JPEG, PNG, GIF or BMP image' };
}

function parseJpeg(b: Buffer, need: (n: number) => HeaderResult): HeaderResult {
  let i = 2;
  for (;;) {
    // Markers may be preceded by any number of 0xFF fill bytes.
    while (i < b.length && b[i] === 0xff && i + 1 < b.length && b[i + 1] === 0xff) i++;
    if (i + 4 > b.length) return need(i + 4);
    if (b[i] !== 0xff) return { kind: 'invalid', reason: `JPEG: bad marker at ${i}` };
    const marker = b[i + 1];
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return { kind: 'invalid', reason: 'JPEG: no frame header before scan' };
    const len = b.readUInt16BE(i + 2);
    if (len < 2) return { kind: 'invalid', reason: 'JPEG: bad segment length' };
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (i + 10 > b.length) return need(i + 10);
      if (marker > 0xc2)
        return {
          kind: 'invalid',
          reason: `JPEG: SOF${marker - 0xc0} (lossless/arithmetic) is not readable by ImageIO`,
        };
      const precision = b[i + 4];
      const height = b.readUInt16BE(i + 5);
      const width = b.readUInt16BE(i + 7);
      const comps = b[i + 9];
      if (precision !== 8) return { kind: 'invalid', reason: `JPEG: ${precision}-bit samples` };
      if (height === 0 || width === 0) return { kind: 'invalid', reason: 'JPEG: zero dimension' };
      if (comps === 1) return { kind: 'ok', format: 'jpeg', height, width, nChannels: 1 };
      if (comps === 3) return { kind: 'ok', format: 'jpeg', height, width, nChannels: 3 };
      return { kind: 'invalid', reason: `JPEG: ${comps} components (CMYK/YCCK) are not readable by ImageIO` };
    }
    i += 2 + len;
  }
}

function parsePng(b: Buffer, need: (n: number) => HeaderResult): HeaderResult {
  if (b.length < 33) return need(33);
  if (b.toString('latin1', 12, 16) !== 'IHDR') return { kind: 'invalid', reason: 'PNG: first chunk is not IHDR' };
  const width = b.readUInt32BE(16);
  const height = b.readUInt32BE(20);
  const colorType = b[25];
  if (width === 0 || height === 0) return { kind: 'invalid', reason: 'PNG: zero dimension' };
  if (![0, 2, 3, 4, 6].includes(colorType)) return { kind: 'invalid', reason: `PNG: colour type ${colorType}` };
  if (colorType === 0 || colorType === 4) return { kind: 'ok', format: 'png', height, width, nChannels: 1 };
  if (colorType === 6) return { kind: 'ok', format: 'png', height, width, nChannels: 4 };
  // RGB or palette: transparency comes from a tRNS chunk before IDAT.
  let i = 33;
  for (;;) {
    if (i + 8 > b.length) return need(i + 8);
    const len = b.readUInt32BE(i);
    const type = b.toString('latin1', i + 4, i + 8);
    if (type === 'tRNS') return { kind: 'ok', format: 'png', height, width, nChannels: 4 };
    if (type === 'IDAT' || type === 'IEND') return { kind: 'ok', format: 'png', height, width, nChannels: 3 };
    i += 12 + len;
  }
}

function parseGif(b: Buffer, need: (n: number) => HeaderResult): HeaderResult {
  if (b.length < 13) return need(13);
  const packed = b[10];
  let i = 13 + (packed & 0x80 ? 3 * (1 << ((packed & 7) + 1)) : 0);
  let transparent = false;
  for (;;) {
    if (i + 1 > b.length) return need(i + 16);
    const block = b[i];
    if (block === 0x21) {
      if (i + 2 > b.length) return need(i + 16);
      const label = b[i + 1];
      let j = i + 2;
      if (label === 0xf9) {
        if (j + 2 > b.length) return need(j + 16);
        transparent = (b[j + 1] & 1) === 1;
      }
      // Skip the data sub-blocks.
      for (;;) {
        if (j + 1 > b.length) return need(j + 256);
        const n = b[j];
        j += 1 + n;
        if (n === 0) break;
      }
      i = j;
    } else if (block === 0x2c) {
      if (i + 10 > b.length) return need(i + 10);
      const width = b.readUInt16LE(i + 5);
      const height = b.readUInt16LE(i + 7);
      if (width === 0 || height === 0) return { kind: 'invalid', reason: 'GIF: zero dimension' };
      return { kind: 'ok', format: 'gif', height, width, nChannels: transparent ? 4 : 3 };
    } else {
      return { kind: 'invalid', reason: 'GIF: no image' };
    }
  }
}

function parseBmp(b: Buffer, need: (n: number) => HeaderResult): HeaderResult {
  if (b.length < 30) return need(70);
  const dib = b.readUInt32LE(14);
  let width: number;
  let height: number;
  if (dib === 12) {
    width = b.readUInt16LE(18);
    height = b.readUInt16LE(20);
  } else if (dib >= 40) {
    width = b.readInt32LE(18);
    height = Math.abs(b.readInt32LE(22));
  } else return { kind: 'invalid', reason: `BMP: header size ${dib}` };
  if (width <= 0 || height <= 0) return { kind: 'invalid', reason: 'BMP: bad dimension' };
  let channels: 3 | 4 = 3;
  if (dib >= 56) {
    if (b.length < 14 + 56) return need(14 + 56);
    const bpp = b.readUInt16LE(28);
    const compression = b.readUInt32LE(30);
    // BITMAPV3INFOHEADER and later: red, green, blue, alpha masks at 54, 58, 62, 66.
    const alphaMask = b.readUInt32LE(66);
    if ((compression === 3 || compression === 6) && bpp >= 16 && alphaMask !== 0) channels = 4;
  }
  return { kind: 'ok', format: 'bmp', height, width, nChannels: channels };
}

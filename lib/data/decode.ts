// The general decoder: sharp (libvips) for every file the native JPEG path
// declines — PNG, WebP, TIFF, GIF, EXIF-rotated JPEGs, 12-bit JPEGs... It
// yields 8-bit RGB that then goes through the same native
// crop/resize/normalise step, so the output layout and semantics are the same.
import sharp, { Sharp } from 'sharp';

export interface RgbImage {
  rgb: Buffer;
  width: number;
  height: number;
}

export interface DecodeOptions {
  /** Apply the EXIF orientation (PIL's ImageOps.exif_transpose); default true. torchvision's loader does not. */
  exifTranspose?: boolean;
}

/**
 * Decodes to 8-bit sRGB as torchvision's PIL loader (`Image.open(f).convert('RGB')`)
 * does: alpha dropped, grey/palette expanded, CMYK and 16-bit converted, and
 * (unless `exifTranspose: false`) the EXIF orientation applied.
 * `maxPixels` (0: none) refuses larger images before decoding them.
 */
export async function decodeWithSharp(
  source: string | Uint8Array,
  maxPixels: number,
  options: DecodeOptions = {},
): Promise<RgbImage> {
  const open = () =>
    sharp(source as string | Buffer, { limitInputPixels: maxPixels > 0 ? maxPixels : false, failOn: 'warning' });
  const meta = await open().metadata();
  let img = open();
  if (options.exifTranspose ?? true) img = img.rotate();
  if (meta.channels === 1 && (meta.depth === 'ushort' || meta.depth === 'short')) return grey16(img);
  const { data, info } = await img
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected RGB`);
  return { rgb: data, width: info.width, height: info.height };
}

/**
 * 16-bit greyscale (PIL mode I;16): PIL's convert('RGB') clips each value to
 * 255 where libvips would keep the high byte (so 0..255 data came out black).
 */
async function grey16(img: Sharp): Promise<RgbImage> {
  const { data, info } = await img
    .toColourspace('grey16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 1) throw new Error(`decoded a 16-bit grey image to ${info.channels} channels`);
  const n = info.width * info.height;
  // Native-endian samples; copied when the buffer is not 2-byte aligned.
  const v =
    data.byteOffset % 2 === 0
      ? new Uint16Array(data.buffer, data.byteOffset, n)
      : new Uint16Array(Uint8Array.from(data.subarray(0, n * 2)).buffer);
  const rgb = Buffer.allocUnsafe(n * 3);
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    const g = v[i] > 255 ? 255 : v[i];
    rgb[o] = rgb[o + 1] = rgb[o + 2] = g;
  }
  return { rgb, width: info.width, height: info.height };
}

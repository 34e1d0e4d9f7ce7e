// The general decoder: sharp (libvips) for every file the native JPEG path
// declines — PNG, WebP, TIFF, GIF, CMYK JPEGs, EXIF-rotated JPEGs, 12-bit
// JPEGs... It yields 8-bit RGB that then goes through the same native
// crop/resize/normalise step, so the output layout and semantics are the same.
import sharp from 'sharp';

export interface RgbImage {
  rgb: Buffer;
  width: number;
  height: number;
}

/**
 * Decodes to 8-bit sRGB: EXIF orientation applied, alpha dropped (as PIL's
 * convert('RGB') does), grey/palette expanded, CMYK and 16-bit converted.
 * `maxPixels` (0: none) refuses larger images before decoding them.
 */
export async function decodeWithSharp(source: string | Uint8Array, maxPixels: number): Promise<RgbImage> {
  const img = sharp(source as string | Buffer, { limitInputPixels: maxPixels > 0 ? maxPixels : false, failOn: 'warning' });
  const { data, info } = await img
    .rotate()
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected RGB`);
  return { rgb: data, width: info.width, height: info.height };
}

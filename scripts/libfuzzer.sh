#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, with AddressSanitizer and UBSan) of the
# native image path: test/fuzz/image_fuzzer.cc over native/data/*.plain.cc,
# which compile without LibTorch or Node. Complements scripts/fuzz.mjs (seeded
# mutation of every reader through the addon) with coverage feedback.
#
#   scripts/libfuzzer.sh [SECONDS]     (default 600; needs clang-14: apt-get install clang-14)
#
# The corpus grows in fuzz-out/libfuzzer/corpus (kept between runs); a crash,
# leak or timeout is saved in fuzz-out/libfuzzer/ as crash-*/leak-*/timeout-*,
# and replays with: build/fuzz/image_fuzzer FILE
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
[ -n "$cxx" ] || { echo "libfuzzer.sh: clang++ not found (apt-get install clang-14)" >&2; exit 2; }
[ -f /usr/include/turbojpeg.h ] && [ -f /usr/include/jpeglib.h ] ||
  { echo "libfuzzer.sh: libjpeg-turbo headers missing (apt-get install libturbojpeg0-dev libjpeg62-turbo-dev)" >&2; exit 2; }

mkdir -p build/fuzz fuzz-out/libfuzzer/corpus
bin=build/fuzz/image_fuzzer
"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DTORCHLINE_TURBOJPEG=1 -DTORCHLINE_LIBJPEG=1 \
  test/fuzz/image_fuzzer.cc native/data/image.plain.cc native/data/jpeg_region.plain.cc \
  native/data/resample.plain.cc native/data/spark_image.plain.cc \
  -lturbojpeg -ljpeg -o "$bin"

# Seeds: small real photos (opencv-doc) and sharp's re-encodings of one of them
# (progressive, 4:4:4, greyscale, CMYK, EXIF-rotated, restart markers), each
# behind the 16 bytes of choices the target reads first (target, output size,
# transforms), in the four target families.
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
node - "$seeds" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const sharp = require('sharp');
const out = process.argv[2];
const dir = '/usr/share/doc/opencv-doc/examples/data';
const photos = fs.existsSync(dir)
  ? fs.readdirSync(dir).filter((f) => f.endsWith('.jpg')).map((f) => path.join(dir, f))
    .filter((f) => fs.statSync(f).size < 64 * 1024)
  : [];
(async () => {
  const files = photos.map((f) => fs.readFileSync(f));
  const base = sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 80, b: 20 } } });
  const src = photos.length ? sharp(photos[0]).resize(96) : base;
  const img = await src.png().toBuffer();
  const s = () => sharp(img);
  files.push(
    await s().jpeg({ progressive: true }).toBuffer(),
    await s().jpeg({ chromaSubsampling: '4:4:4' }).toBuffer(),
    await s().greyscale().jpeg().toBuffer(),
    await s().toColourspace('cmyk').jpeg().toBuffer(),
    await s().withMetadata({ orientation: 6 }).jpeg().toBuffer(),
    await s().jpeg({ optimiseScans: true, progressive: true, quality: 40 }).toBuffer(),
  );
  let n = 0;
  for (const f of files)
    for (const target of [0, 2, 3]) {
      // target, output 32 px square, float32, DCT scaling, EXIF on, transform kind (RandomResizedCrop,
      // Resize + CenterCrop, Resize), then the resize margin, flip and seed bytes.
      const choices = Buffer.from([target, 24, 1, 0, 1, 1, n % 3, 8, 1, 7, 0, 0, 0, 0, 0, 0]);
      fs.writeFileSync(path.join(out, `seed-${n++}`), Buffer.concat([choices, f]));
    }
})();
JS

echo "libfuzzer.sh: $bin for ${seconds}s (corpus fuzz-out/libfuzzer/corpus, seeds $(ls "$seeds" | wc -l))"
# 2 GiB per input: the decoder's own limits (4 MP, 64 MiB of coefficients) keep real use far below.
"$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -max_len=262144 -print_final_stats=1 \
  -artifact_prefix=fuzz-out/libfuzzer/ fuzz-out/libfuzzer/corpus "$seeds"

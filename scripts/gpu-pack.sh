#!/usr/bin/env bash
# Fills .gpu/ (git-ignored) with what scripts/gpu-check.sh needs on a GPU machine that has no Node or npm:
# the Node binary (xz), the production node_modules (xz tar), the compiled dist/, libjpeg-turbo's headers and
# libraries (the JPEG fast path), and a few real photos. About 35 MB; the device tool carries up to 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/jpeg/include .gpu/jpeg/lib .gpu/photos
xz -T0 -6 -c "$(command -v node)" >.gpu/node.xz
npx tsc -p tsconfig.json
tar -cJf .gpu/dist.tar.xz dist
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' | sort -u |
  grep -v -e '-linuxmusl-' | tar -cJf .gpu/node_modules.tar.xz -T -
inc=/usr/include
cp "$inc/turbojpeg.h" "$inc/jpeglib.h" "$inc/jmorecfg.h" "$inc/jerror.h" .gpu/jpeg/include/
cp "$inc/x86_64-linux-gnu/jconfig.h" .gpu/jpeg/include/ 2>/dev/null || cp "$inc/jconfig.h" .gpu/jpeg/include/
cp -r "$inc/gloo" .gpu/jpeg/include/  # c10d's Gloo header needs gloo's headers
for lib in libturbojpeg.so.0 libjpeg.so.62; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .gpu/jpeg/lib/
  ln -sf "$lib" ".gpu/jpeg/lib/${lib%%.so.*}.so"
done
ls /usr/share/doc/opencv-doc/examples/data/*.jpg | head -24 | xargs -I{} cp {} .gpu/photos/
du -sh .gpu

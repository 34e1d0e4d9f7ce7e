# Writes the unusual and hostile images of test/data/images.test.ts with PIL,
# and what torchvision's loader (PIL: Image.open(f).convert('RGB')) reads from
# them, as raw HWC uint8 next to each file (<name>.rgb, with <name>.json
# holding the size).
import io
import json
import struct
import sys

import numpy as np
from PIL import Image, ImageOps

out, photo = sys.argv[1], sys.argv[2]


def reference(name, img):
    a = np.asarray(img.convert("RGB"))
    a.tofile(f"{out}/{name}.rgb")
    with open(f"{out}/{name}.json", "w") as f:
        json.dump({"height": a.shape[0], "width": a.shape[1]}, f)


def pil_read(name):
    with open(f"{out}/{name}", "rb") as fh:
        return Image.open(io.BytesIO(fh.read()))


src = Image.open(photo).convert("RGB").resize((160, 120), Image.BILINEAR)

# CMYK JPEGs as Photoshop and PIL write them (Adobe marker, inverted samples);
# 4:4:4 and the default subsampling.
for name, kw in [("cmyk.jpg", {"quality": 90}), ("cmyk444.jpg", {"quality": 95, "subsampling": 0})]:
    src.convert("CMYK").save(f"{out}/{name}", **kw)
    reference(name, pil_read(name))

# 16-bit greyscale PNGs (PIL mode I;16): values 0..255 (what a careless
# export of 8-bit data gives) and over 255 (clipped by convert('RGB')).
grey = np.asarray(src.convert("L")).astype(np.uint16)
Image.fromarray(grey).save(f"{out}/grey16-low.png")
reference("grey16-low.png", pil_read("grey16-low.png"))
Image.fromarray((grey * 3 + 7).astype(np.uint16)).save(f"{out}/grey16-high.png")
reference("grey16-high.png", pil_read("grey16-high.png"))

# EXIF orientation 6: torchvision ignores it; exif_transpose rotates.
exif = Image.Exif()
exif[0x0112] = 6
src.save(f"{out}/exif6.jpg", quality=95, exif=exif.tobytes())
reference("exif6.jpg", pil_read("exif6.jpg"))
reference("exif6.jpg.transposed", ImageOps.exif_transpose(pil_read("exif6.jpg")))

# Hostile: 65500x1 (libjpeg's widest), tiny on disk.
Image.new("RGB", (65500, 1), (200, 30, 90)).save(f"{out}/wide.jpg", quality=90)


def set_size(data, marker, width, height):
    """Rewrites the frame size of the SOF `marker` (a tiny file claiming a huge image)."""
    i = data.index(bytes([0xFF, marker]))
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9:]


# A progressive JPEG of 16x16 claiming 13000x13000 (169 MP, under PIL's
# 179 MP limit): libjpeg allocates and zeroes every coefficient first.
buf = io.BytesIO()
Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "JPEG", quality=90, progressive=True)
with open(f"{out}/progressive-bomb.jpg", "wb") as f:
    f.write(set_size(buf.getvalue(), 0xC2, 13000, 13000))
# A large ordinary photo-sized image (6000x4000): decoding it needs ~70 MB
# per worker, which must be given back afterwards.
g = np.linspace(0, 255, 6000, dtype=np.uint8)
Image.fromarray(np.stack([np.tile(g, (4000, 1))] * 3, axis=-1)).save(f"{out}/large.jpg", quality=80)
print("ok")

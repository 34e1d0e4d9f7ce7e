# Small PNGs cut from the opencv-doc photos, in the modes Spark's image source
# stores (RGB, RGBA, L) and a palette one: argv = out_dir, count, seed.
# Prints [{file, mode}] as JSON.
import glob, json, os, random, sys
from PIL import Image

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rng = random.Random(seed)
photos = sorted(glob.glob('/usr/share/doc/opencv-doc/examples/data/*.jpg'))
modes = ['RGB', 'RGBA', 'L', 'P']
res = []
for i in range(n):
    im = Image.open(photos[i % len(photos)]).convert('RGB')
    w, h = rng.randint(40, 120), rng.randint(40, 120)
    x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
    im = im.crop((x, y, x + w, y + h))
    mode = modes[i % len(modes)]
    if mode == 'RGBA':
        im = im.convert('RGBA')
        im.putalpha(Image.linear_gradient('L').resize(im.size))
    elif mode != 'RGB':
        im = im.convert(mode)
    p = os.path.join(out, f'img-{i:04d}.png')
    im.save(p)
    res.append({'file': p, 'mode': mode})
print(json.dumps(res))

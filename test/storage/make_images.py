# Writes images of known kinds into argv[1] and prints, as JSON, what PIL
# (the peer) reads back for each: width, height, mode, transparency.
import io, json, os, sys
from PIL import Image

out = sys.argv[1]
src = '/usr/share/doc/opencv-doc/examples/data'
os.makedirs(out, exist_ok=True)
base = Image.open(os.path.join(src, 'baboon.jpg')).convert('RGB').resize((301, 217))
gray = base.convert('L')

def save(name, img, **kw):
    img.save(os.path.join(out, name), **kw)

save('rgb.jpg', base, quality=90)
save('gray.jpg', gray, quality=90)
save('progressive.jpg', base, quality=80, progressive=True)
save('cmyk.jpg', base.convert('CMYK'), quality=90)
# A 200 KB ICC profile ahead of the frame header: the header reader must read on.
save('big-icc.jpg', base, quality=90, icc_profile=b'\0' * 200_000)
save('rgb.png', base)
save('rgba.png', base.convert('RGBA'))
save('l.png', gray)
save('la.png', gray.convert('LA'))
save('p.png', base.convert('P'))
pt = base.convert('P')
save('p-trns.png', pt, transparency=0)
save('rgb-trns.png', base, transparency=(0, 0, 0))
save('p.gif', base.convert('P'))
save('p-trns.gif', pt, transparency=0)
save('rgb.bmp', base)
save('x.webp', base)
with open(os.path.join(src, 'apple.jpg'), 'rb') as f:
    data = f.read()
with open(os.path.join(out, 'truncated.jpg'), 'wb') as f:
    f.write(data[:60])
with open(os.path.join(out, 'notes.txt'), 'w') as f:
    f.write('not an image\n')

info = {}
for name in sorted(os.listdir(out)):
    try:
        im = Image.open(os.path.join(out, name))
        im.load()
        info[name] = {'width': im.size[0], 'height': im.size[1], 'mode': im.mode, 'format': im.format,
                      'transparency': 'transparency' in im.info}
    except Exception as e:
        info[name] = {'error': str(e)[:80]}
print(json.dumps(info))

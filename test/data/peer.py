# The torchvision peer for test/data: applies torchvision transforms with PIL
# (as torchvision.datasets.ImageFolder's default loader does) and writes the
# float32 results, or prints ImageFolder's class mapping / sampler indices.
import json
import sys

import torch
from PIL import Image
from torchvision import datasets, transforms as T

cmd = sys.argv[1]
if cmd == "transform":
    # transform <out.raw> <resize> <crop> <files...>: Resize+CenterCrop+ToTensor+Normalize
    out, resize, crop, files = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
    tf = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with open(out, "wb") as f:
        for p in files:
            with open(p, "rb") as fh:
                img = Image.open(fh).convert("RGB")
            f.write(tf(img).numpy().tobytes())
elif cmd == "resized_crop":
    # resized_crop <out.raw> <json [[file, top, left, h, w, size]...]>: F.resized_crop, uint8 HWC
    import numpy as np
    out, specs = sys.argv[2], json.loads(sys.argv[3])
    from torchvision.transforms import functional as F
    with open(out, "wb") as f:
        for p, top, left, h, w, size in specs:
            img = Image.open(p).convert("RGB")
            f.write(np.asarray(F.resized_crop(img, top, left, h, w, [size, size])).tobytes())
elif cmd == "imagefolder":
    ds = datasets.ImageFolder(sys.argv[2])
    print(json.dumps({"classes": ds.classes, "class_to_idx": ds.class_to_idx, "samples": ds.samples}))
elif cmd == "distributed":
    # distributed <n> <world> <seed> <epoch> <drop_last>
    from torch.utils.data import DistributedSampler
    n, world, seed, epoch, drop = (int(x) for x in sys.argv[2:7])
    res = []
    for rank in range(world):
        s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=bool(drop))
        s.set_epoch(epoch)
        res.append(list(s))
    print(json.dumps(res))
else:
    raise SystemExit("unknown command " + cmd)

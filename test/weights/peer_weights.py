# The Python peer for the pretrained-weights tests: torchvision's own weights
# tables, state dicts written by torch.save, and torchvision's logits.
import hashlib
import json
import sys

import torch
import torchvision
import torchvision.models as M
from torch.hub import HASH_REGEX
from torchvision.models._meta import _IMAGENET_CATEGORIES

DEPTHS = [18, 34, 50, 101, 152]


def table():
    out = {"categories": list(_IMAGENET_CATEGORIES), "torchvision": torchvision.__version__, "enums": []}
    for d in DEPTHS:
        W = getattr(M, f"ResNet{d}_Weights")
        entries = []
        for w in W:
            t = w.transforms()
            meta = {k: v for k, v in w.meta.items() if k != "categories"}
            (acc,) = meta["_metrics"].values()
            entries.append({
                "name": w.name,
                "url": w.url,
                "hashPrefix": HASH_REGEX.search(w.url.rsplit("/", 1)[1]).group(1),
                "numClasses": len(w.meta["categories"]),
                "categoriesEqual": list(w.meta["categories"]) == list(_IMAGENET_CATEGORIES),
                "numParams": meta["num_params"],
                "minSize": list(meta["min_size"]),
                "recipe": meta["recipe"],
                "dataset": next(iter(meta["_metrics"])),
                "acc1": acc["acc@1"],
                "acc5": acc["acc@5"],
                "gflops": meta["_ops"],
                "fileSizeMB": meta["_file_size"],
                "resizeSize": list(t.resize_size),
                "cropSize": list(t.crop_size),
                "mean": list(t.mean),
                "std": list(t.std),
                "interpolation": t.interpolation.value,
                "antialias": t.antialias,
            })
        out["enums"].append({"enumName": W.__name__, "model": f"resnet{d}", "default": W.DEFAULT.name, "entries": entries})
    print(json.dumps(out))


def write(depth, out_file, seed):
    """A randomly initialised torchvision ResNet whose BatchNorm statistics were
    calibrated on random inputs (so eval-mode logits are of ordinary size),
    saved with torch.save as torchvision's files are; prints its SHA-256."""
    torch.manual_seed(int(seed))
    m = getattr(M, f"resnet{depth}")()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average over the calibration batches
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, 3, 64, 64))
    torch.save(m.state_dict(), out_file)
    with open(out_file, "rb") as f:
        print(hashlib.sha256(f.read()).hexdigest())


def logits(depth, weights_name, state_file, *images):
    """torchvision's logits for images preprocessed with weights.transforms()."""
    from PIL import Image

    torch.set_num_threads(2)
    w = getattr(M, f"ResNet{depth}_Weights")[weights_name]
    m = getattr(M, f"resnet{depth}")(num_classes=len(w.meta["categories"]))
    m.load_state_dict(torch.load(state_file, weights_only=True))
    m.eval()
    pre = w.transforms()
    x = torch.stack([pre(Image.open(f).convert("RGB")) for f in images])
    with torch.no_grad():
        y = m(x)
    print(json.dumps({"logits": y.tolist(), "argmax": y.argmax(1).tolist()}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"table": table, "write": write, "logits": logits}[cmd](*args)

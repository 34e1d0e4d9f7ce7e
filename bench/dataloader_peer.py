# torchvision peer of bench/dataloader.mjs: ImageFolder + DataLoader with the
# same presets, batch size and worker count. Prints one JSON line.
import json
import resource
import sys
import time

import torch
from torchvision import datasets, transforms as T

root, workers, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
presets = {
    "train": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm]),
    "eval": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]),
}
out = {}


def cpu_seconds():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


for name, tf in presets.items():
    ds = datasets.ImageFolder(root, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0)
    rates = []
    for epoch in range(epochs + 1):  # epoch 0 warms up (worker start, page cache)
        t0 = time.perf_counter()
        n = 0
        for images, labels in dl:
            n += images.shape[0]
        if epoch > 0:
            rates.append(n / (time.perf_counter() - t0))
    out[name] = max(rates)
    # CPU time of the main process and its workers (counted once they exit), all epochs.
    c0 = cpu_seconds()
    dl2 = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    n = sum(images.shape[0] for images, _ in dl2)
    del dl2
    out[name + "PerCpuSecond"] = n / (cpu_seconds() - c0)
    del dl
self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
out["peakRssMiB"] = round((self_rss + child_rss * max(workers, 1)) / 1024)
print(json.dumps(out))

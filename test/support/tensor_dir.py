# The Python half of test/support/npy.ts: folders of numbered .npy files + index.json.
import json
import os

import numpy as np
import torch


def write_dir(path, tensors):
    os.makedirs(path, exist_ok=True)
    names = list(tensors.keys())
    for i, n in enumerate(names):
        np.save(os.path.join(path, f"{i}.npy"), tensors[n].detach().cpu().contiguous().numpy())
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(names, f)


def read_dir(path):
    with open(os.path.join(path, "index.json")) as f:
        names = json.load(f)
    return {n: torch.from_numpy(np.load(os.path.join(path, f"{i}.npy"))) for i, n in enumerate(names)}

# Python PyTorch peer of bench/train-step.mjs: the same model, optimizer, batch and thread count, at a given
# precision/layout ('fp32' NCHW, or 'bf16' = bf16 autocast + channels_last) and optimizer (default loop or
# fused=True). It builds the model, runs the warm-up steps, prints "ready", then answers each "run N" line on
# stdin with one JSON line: the N step times and the process's minor page faults per step. The bench keeps
# it alive between its rounds so both sides are measured, turn by turn, on the same stretch of machine time.
import json
import resource
import sys
import time

import torch
import torchvision

depth, batch, size, warmup, threads = (int(a) for a in sys.argv[1:6])
mode, fused = sys.argv[6], sys.argv[7] == "fused"
torch.set_num_threads(threads)
torch.manual_seed(0)
model = getattr(torchvision.models, f"resnet{depth}")(num_classes=1000).train()
x = torch.randn(batch, 3, size, size)
if mode == "bf16":
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
loss_fn = torch.nn.CrossEntropyLoss()
y = torch.randint(0, 1000, (batch,))


def step():
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
        loss = loss_fn(model(x).float(), y)
    loss.backward()
    opt.step()
    loss.item()


for _ in range(warmup):
    step()
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if not words or words[0] != "run":
        break
    times, faults = [], 0
    for _ in range(int(words[1])):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    print(json.dumps({"times": times, "faults": faults, "torch": torch.__version__}), flush=True)

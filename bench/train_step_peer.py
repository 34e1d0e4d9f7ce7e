# Python PyTorch peer of bench/train-step.mjs: the same model, optimizer, batch and thread count, at a given
# precision/layout ('fp32' NCHW, or 'bf16' = bf16 autocast + channels_last) and optimizer (default loop or
# fused=True). Prints step times and the process's minor page faults per timed step.
import json
import resource
import sys
import time

import torch
import torchvision

depth, batch, size, warmup, steps, threads = (int(a) for a in sys.argv[1:7])
mode, fused = sys.argv[7], sys.argv[8] == "fused"
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
times = []
faults = 0
for i in range(warmup + steps):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
        loss = loss_fn(model(x).float(), y)
    loss.backward()
    opt.step()
    loss.item()
    if i >= warmup:
        times.append(time.perf_counter() - t0)
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"times": times, "faultsPerStep": faults / steps, "torch": torch.__version__}))

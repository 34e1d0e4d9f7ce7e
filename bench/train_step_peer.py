# Python PyTorch peer of bench/train-step.mjs: the same model, optimizer, batch and thread count.
import json
import sys
import time

import torch
import torchvision

depth, batch, size, warmup, steps, threads = (int(a) for a in sys.argv[1:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = getattr(torchvision.models, f"resnet{depth}")(num_classes=1000).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
x = torch.randn(batch, 3, size, size)
y = torch.randint(0, 1000, (batch,))
times = []
for i in range(warmup + steps):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    loss.item()
    if i >= warmup:
        times.append(time.perf_counter() - t0)
print(json.dumps({"times": times}))

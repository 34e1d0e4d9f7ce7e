# Python peer of bench/distributed.mjs (one rank): torch.distributed Gloo all-reduce of the same tensor, or
# ResNet50 train steps, with DistributedDataParallel when WORLD_SIZE > 1.
# argv: allreduce ITERS | step ITERS BATCH SIZE
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

mode, iters = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
world = int(os.environ.get("WORLD_SIZE", "1"))
if world > 1:
    dist.init_process_group("gloo")
rank = dist.get_rank() if world > 1 else 0
if mode == "allreduce":
    t = torch.ones(25_557_032)
    dist.all_reduce(t)
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(t)
    secs = (time.perf_counter() - t0) / iters
else:
    import torchvision

    batch, size = int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    model = torchvision.models.resnet50().train()
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % 1000

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    # Two warm-up steps: DDP regroups its buckets after the first.
    step()
    step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    secs = (time.perf_counter() - t0) / iters
if rank == 0:
    print(json.dumps({"seconds": secs}))
if world > 1:
    dist.barrier()
    dist.destroy_process_group()

# Python peer of bench/distributed.mjs: torch.distributed Gloo all-reduce of the same tensor.
import json
import os
import sys
import time

import torch
import torch.distributed as dist

iters = int(sys.argv[1])
dist.init_process_group("gloo")
t = torch.ones(25_557_032)
dist.all_reduce(t)
t0 = time.perf_counter()
for _ in range(iters):
    dist.all_reduce(t)
secs = (time.perf_counter() - t0) / iters
if dist.get_rank() == 0:
    print(json.dumps({"seconds": secs}))
dist.barrier()
dist.destroy_process_group()

"""PyTorch eager peer of bench/gpu-check.mjs: torchvision ResNet50, channels_last, autocast, Adam, synthetic
input on the device, the same batch/size/steps. Prints one JSON line: img/s per precision with torch.optim's
default Adam (foreach on CUDA) and with fused=True."""
import json
import sys
import time

import torch
import torchvision

B, S, STEPS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
precisions = sys.argv[4].split(",")
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cudnn.benchmark = True
out = {"torch": torch.__version__}


def run(amp, fused):
    torch.manual_seed(0)
    m = torchvision.models.resnet50(num_classes=1000).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4, fused=fused)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(dev, enabled=amp == "fp16")
    x = torch.randn(B, 3, S, S, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.arange(B, device=dev) % 10).long()
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=dtype):
            loss = loss_fn(m(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()  # a training loop reads its loss once per step, as torchline does

    for _ in range(8 if dev == "cuda" else 1):
        step()
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    if dev == "cuda":
        torch.cuda.synchronize()
    return round(B * STEPS / (time.perf_counter() - t0), 1)


for p in precisions:
    out[p] = run(p, None)
    out[p + "Fused"] = run(p, True)
print(json.dumps(out))

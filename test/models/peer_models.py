# The Python peer for the model, optimizer and scheduler tests (torchvision 0.14, torch 1.13).
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import torch  # noqa: E402
import torchvision  # noqa: E402
from tensor_dir import read_dir, write_dir  # noqa: E402

DEPTHS = [18, 34, 50, 101, 152]


def model(depth, **kw):
    return getattr(torchvision.models, f"resnet{depth}")(**kw)


def keys():
    out = {}
    for d in DEPTHS:
        sd = model(d, num_classes=10).state_dict()
        out[d] = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()]
    print(json.dumps(out))


def forward(path, depth):
    torch.manual_seed(0)
    m = model(int(depth), num_classes=10)
    with torch.no_grad():  # non-trivial running stats, so eval mode really uses them
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    m.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        y = m(x)
    write_dir(os.path.join(path, "weights"), m.state_dict())
    write_dir(os.path.join(path, "io"), {"x": x, "y": y})


def train(path, config_json):
    cfg = json.loads(config_json)
    torch.manual_seed(0)
    m = model(18, num_classes=10)
    m.train()
    x = torch.randn(cfg["steps"], 8, 3, 32, 32)
    y = torch.randint(0, 10, (cfg["steps"], 8))
    write_dir(os.path.join(path, "init"), m.state_dict())
    write_dir(os.path.join(path, "data"), {"x": x, "y": y})
    opts = dict(cfg["options"])
    # torchline's default is fused=True; {"fused": false} compares its per-parameter loop with torch's default.
    opts["fused"] = cfg.get("fused", True) or None
    if "betas" in opts:
        opts["betas"] = tuple(opts["betas"])
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[cfg["kind"]]
    if cfg.get("headLr"):
        head = [p for n, p in m.named_parameters() if n.startswith("fc.")]
        body = [p for n, p in m.named_parameters() if not n.startswith("fc.")]
        opt = cls([{"params": body}, {"params": head, "lr": cfg["headLr"]}], **opts)
    else:
        opt = cls(m.parameters(), **opts)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.get("labelSmoothing", 0.0))
    channels_last = cfg.get("channelsLast", False)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    losses = []
    for i in range(cfg["steps"]):
        opt.zero_grad()
        xi = x[i].contiguous(memory_format=torch.channels_last) if channels_last else x[i]
        loss = loss_fn(m(xi), y[i])
        loss.backward()
        if cfg.get("clip"):
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg["clip"])
        opt.step()
        losses.append(loss.item())
    write_dir(os.path.join(path, "final"), m.state_dict())
    print(json.dumps(losses))


def sched(config_json):
    cfg = json.loads(config_json)
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    kind = cfg.get("optimizer", "sgd")
    if kind == "sgd":
        opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": 0.5}], lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam([{"params": [p1]}, {"params": [p2], "lr": 0.5}], lr=0.1)
    S = torch.optim.lr_scheduler
    kw = cfg["kwargs"]
    s = {
        "StepLR": lambda: S.StepLR(opt, **kw),
        "MultiStepLR": lambda: S.MultiStepLR(opt, **kw),
        "CosineAnnealingLR": lambda: S.CosineAnnealingLR(opt, **kw),
        "LinearLR": lambda: S.LinearLR(opt, **kw),
        "OneCycleLR": lambda: S.OneCycleLR(opt, **kw),
    }[cfg["name"]]()
    lrs, moms = [], []
    for _ in range(cfg["steps"]):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([g["momentum"] if "momentum" in g else g["betas"][0] for g in opt.param_groups])
        opt.step()
        s.step()
    print(json.dumps({"lrs": lrs, "momentum": moms}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"keys": keys, "forward": forward, "train": train, "sched": sched}[cmd](*args)

"""GPU throughput: model images/s in fp32 and AMP on in-memory batches, loader images/s, and one
fastmask training epoch with precision="auto", for resnet18 and efficientnet_b0. Run via bench/gpu.sh."""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from fastmask.data.dls import build_dls
from fastmask.data.load import load_data
from fastmask.learn.build import build_learner
from fastmask.recipe import Recipe


def model_rate(learn, dtype, steps=30):
    model = learn.model.cuda().train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler(enabled=dtype is torch.float16)
    bs, (h, w) = learn.dls.bs, learn.dls.one_batch()[0].shape[-2:]
    x = torch.randn(bs, 3, h, w, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 18, (bs,), device="cuda")
    def step():
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t)


def loader_rate(dls, batches=30):
    it, n = iter(dls.train), 0
    next(it)
    t = time.perf_counter()
    for i, (x, y) in enumerate(it):
        n += len(x)
        if i + 1 >= batches:
            break
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", default="384,288")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split(","))
    data = load_data(a.data, progress=False)
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {len(data.train)} images at {size} | "
          f"bs {a.bs} | loader workers {a.workers}")
    for arch in ("resnet18", "efficientnet_b0"):
        r = Recipe(arch=arch, size=size, bs=a.bs, pretrained=False, augment="light", num_workers=a.workers)
        dls = build_dls(r, data.train)
        learn = build_learner(r, dls, notify=lambda m: None)
        fp32, amp = model_rate(learn, None), model_rate(learn, torch.bfloat16)
        fp16 = model_rate(learn, torch.float16)
        feed = loader_rate(dls)
        t = time.perf_counter()
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-4)
        epoch = len(dls.train) * a.bs / (time.perf_counter() - t)
        print(f"{arch}: model fp32 {fp32:.0f} img/s, bf16 AMP {amp:.0f} ({amp / fp32:.2f}x), fp16 AMP {fp16:.0f} "
              f"({fp16 / fp32:.2f}x) | loader {feed:.0f} img/s = {feed / amp:.2f} of bf16 model speed "
              f"({'keeps up' if feed >= amp else 'GPU starved'}) | fastmask epoch incl. valid {epoch:.0f} img/s")


if __name__ == "__main__":
    main()

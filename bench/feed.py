"""Does the input pipeline keep up with the model on this machine's CPU cores? At full resolution (384x288
from the input cache, light augmentation), side by side in one process: images/s of iterating the training
DataLoader alone against images/s of the model's forward+backward on in-memory tensors (the limit).
A ratio >= 1 means the loader feeds training at least as fast as the model consumes it.

    python bench/feed.py --data DIR [--size 384,288] [--archs regnetx_002,resnet18] [--batches 6]"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from fastmask.data.dls import build_dls
from fastmask.data.load import load_data
from fastmask.learn.build import build_learner
from fastmask.recipe import Recipe


def loader_rate(dls, batches):
    it = iter(dls.train)
    next(it)  # workers started, first batch out of the way
    n, t = 0, time.perf_counter()
    for i, (x, _) in enumerate(it):
        n += len(x)
        if i + 1 >= batches:
            break
    return n / (time.perf_counter() - t)


def model_rate(learn, batches):
    model, bs = learn.model.train(), learn.dls.bs
    x = learn.dls.one_batch()[0].clone()
    y = torch.randint(0, 18, (bs,))
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    step()
    t = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * bs / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", default="384,288")
    ap.add_argument("--archs", default="regnetx_002,resnet18")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--batches", type=int, default=6)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split(","))
    data = load_data(a.data, progress=False)
    print(f"{os.cpu_count()} CPU cores | torch {torch.__version__} ({torch.get_num_threads()} threads) | "
          f"{len(data.train)} images at {size[0]}x{size[1]} | bs {a.bs}")
    for arch in a.archs.split(","):
        r = Recipe(arch=arch, size=size, bs=a.bs, pretrained=False, augment="light")
        dls = build_dls(r, data.train)
        learn = build_learner(r, dls, notify=lambda m: None)
        feed, model = loader_rate(dls, a.batches), model_rate(learn, a.batches)
        print(f"{arch}: loader {feed:.0f} img/s (num_workers {r.num_workers}), model fwd+bwd {model:.1f} img/s: "
              f"loader / model = {feed / model:.1f} ({'keeps up' if feed >= model else 'starves the model'})")


if __name__ == "__main__":
    main()

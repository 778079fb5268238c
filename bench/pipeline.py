"""Pipeline efficiency and the official-baseline comparison, measured side by side in one process.

    python bench/pipeline.py [--images 384] [--size 128,96] [--archs resnet18,mobilenetv3_small_100]

For each arch, images/s of the training phase of a fastmask epoch (cache on, cache off) and of the
official-baseline-style pipeline (PIL open + torchvision Resize/ToTensor/Normalize per item, torch
DataLoader), each divided by images/s of the same model's train step on in-memory tensors (the limit).
Rounds interleave the variants so machine noise hits them alike; the best round of each is kept."""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from fastai.callback.core import Callback
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fastmask.data.dls import build_dls
from fastmask.data.load import load_data
from fastmask.learn.build import build_learner
from fastmask.recipe import Recipe


class TrainTimer(Callback):
    "seconds of the training phase only (validation excluded)"
    def before_train(self): self.t0 = time.perf_counter()
    def after_train(self): self.seconds = time.perf_counter() - self.t0


class Official(Dataset):
    def __init__(self, df, size):
        self.paths, self.y = list(df.path), list(df.label)
        self.tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(),
                                      transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def __len__(self): return len(self.paths)
    def __getitem__(self, i): return self.tf(Image.open(self.paths[i]).convert("RGB")), self.y[i]


def step_fn(learn):
    model, opt, lf = learn.model, torch.optim.Adam(learn.model.parameters(), 1e-4), learn.loss_func
    def step(x, y):
        loss = lf(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return step


def fastmask_epoch(recipe, df):
    learn = build_learner(recipe, build_dls(recipe, df), notify=lambda m: None)
    timer = TrainTimer()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-4, cbs=timer)
    return len(learn.dls.train) * recipe.bs / timer.seconds


def limit(recipe, df):
    learn = build_learner(recipe, build_dls(recipe, df), notify=lambda m: None)
    batches = [(torch.Tensor(x).as_subclass(torch.Tensor).clone(), y.as_subclass(torch.Tensor).clone())
               for x, y in learn.dls.train]
    step = step_fn(learn)
    learn.model.train()
    step(*batches[0])  # warm-up
    t = time.perf_counter()
    for x, y in batches:
        step(x, y)
    return len(batches) * recipe.bs / (time.perf_counter() - t)


def official(recipe, df):
    learn = build_learner(recipe, build_dls(recipe, df), notify=lambda m: None)
    dl = DataLoader(Official(df, recipe.size), batch_size=recipe.bs, shuffle=True, drop_last=True, num_workers=0)
    step = step_fn(learn)
    learn.model.train()
    t, n = time.perf_counter(), 0
    for x, y in dl:
        step(x, torch.as_tensor(y))
        n += len(x)
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--size", default="128,96")
    ap.add_argument("--archs", default="resnet18,mobilenetv3_small_100")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=None)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split(","))
    data = load_data(a.data)
    # person split keeps 80 % for training: take enough people for `images` training images
    people = data.train.person.drop_duplicates().iloc[: int(a.images / 0.8 / 7) + 1]
    df = data.train[data.train.person.isin(people)].reset_index(drop=True)
    print(f"{len(df)} images ({len(df) * 0.8:.0f} trained per epoch) at {size[0]}x{size[1]}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cpus")
    rows = []
    for arch in a.archs.split(","):
        r = Recipe(arch=arch, size=size, pretrained=False, augment="none")
        best = {}
        build_dls(r, df)  # cache built outside the timed rounds: it is a one-off per roster and size
        fastmask_epoch(r, df), limit(r, df)  # warm-up: first-call costs (thread pools, lazy imports)
        for _ in range(a.rounds):
            for name, fn in [("limit", limit), ("fastmask cached", fastmask_epoch),
                             ("fastmask no cache", lambda rr, d: fastmask_epoch(rr.but(cache=False), d)),
                             ("official pipeline", official)]:
                best[name] = max(best.get(name, 0), fn(r, df))
        rows.append((arch, best))
        lim = best["limit"]
        print(f"\n{arch}: images/s  " + "  ".join(f"{k} {v:.1f}" for k, v in best.items()))
        print(f"  efficiency (fastmask / limit): cached {best['fastmask cached'] / lim:.2f}, "
              f"no cache {best['fastmask no cache'] / lim:.2f}; "
              f"official pipeline / limit {best['official pipeline'] / lim:.2f}")
        print(f"  speed-up over the official pipeline: cached {best['fastmask cached'] / best['official pipeline']:.2f}x, "
              f"no cache {best['fastmask no cache'] / best['official pipeline']:.2f}x")


if __name__ == "__main__":
    main()

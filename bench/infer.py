"""Inference images/s: plain prediction and TTA with n=4, measured alternately in one run.

    python bench/infer.py MODEL.pkl [--images 512] [--rounds 2]

Expect TTA n=4 at about 1/(n+1) of plain (n augmented passes plus one plain pass), no worse."""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastmask.data.load import load_data
from fastmask.models.infer import load, predict_probs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tta", type=int, default=4)
    a = ap.parse_args()
    learn = load(a.model, trust_pickle=a.model.endswith('.pkl'))  # a file you made: the bench times inference
    paths = list(load_data(None, progress=False).eval.path[: a.images])
    predict_probs(learn, paths[:64])  # warm-up
    best = {"plain": 0.0, "tta": 0.0}
    for _ in range(a.rounds):
        for name, n in (("plain", 0), ("tta", a.tta)):
            t = time.perf_counter()
            predict_probs(learn, paths, tta=n)
            best[name] = max(best[name], len(paths) / (time.perf_counter() - t))
    r = best["tta"] / best["plain"]
    print(f"{len(paths)} eval images: plain {best['plain']:.0f} img/s, TTA n={a.tta} {best['tta']:.0f} img/s, "
          f"ratio {r:.2f} (1/(n+1) = {1 / (a.tta + 1):.2f})")


if __name__ == "__main__":
    main()

"""Face boxes on the twin: where they come from (detected, the person's other photos, typical) and how well
the boxes a face crop uses overlap the twin's true face boxes (faces.csv), per source; and on a real photo
(matplotlib's grace_hopper.jpg, its face box marked by hand). Run: python bench/faces.py [--people 300]"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.data.faces import boxes_for, detect, detect_image, iou
from fastmask.data.layout import load_image, read_train
from fastmask.twin import make_twin

HOPPER_FACE = (178 / 512, 125 / 600, 352 / 512, 335 / 600)  # brow to chin, cheek to cheek, by eye


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--size", default="192x256", help="photo width x height (the default twin's)")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    root = Path(tempfile.mkdtemp()) / "twin"
    make_twin(root, people=a.people, seed=0, size=(w, h), progress=True)
    df = read_train(root / "train")
    boxes, counts, typical = boxes_for(df)
    found = detect(df["path"])
    truth = pd.read_csv(root / "faces.csv", dtype={"folder": str})
    true_of = {str(root / "train" / "images" / f / n): (x0, y0, x1, y1)
               for f, n, x0, y0, x1, y1 in truth.itertuples(index=False)}
    hit = ~np.isnan(found).any(axis=1)
    by = {"detected": [], "person": [], "typical": []}
    for (path, person), ok in zip(df[["path", "person"]].itertuples(index=False), hit):
        by["detected" if ok else "person" if boxes[path] != typical else "typical"].append(
            iou(boxes[path], true_of[path]))
    n = len(df)
    print(f"twin: {a.people} people, {n} photos at {w}x{h}")
    for k, v in counts.items():
        print(f"  {k:9s} {v:5d} ({100 * v / n:4.1f} %)  mean IoU with the true box "
              + (f"{np.mean(by[k]):.3f}" if by[k] else "—"))
    print(f"  all       {n:5d}           mean IoU {np.mean([x for v in by.values() for x in v]):.3f}")
    masks = df.assign(hit=hit).groupby("mask")["hit"].mean()
    print("  detection rate by mask: " + ", ".join(f"{m} {100 * r:.0f} %" for m, r in masks.items()))
    import matplotlib.cbook as cbook
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    box = detect_image(load_image(photo))
    print(f"real photo (grace_hopper.jpg): detected {box is not None}, IoU with the hand-marked face "
          f"{iou(box, HOPPER_FACE):.3f}" if box else "real photo: no face found")


if __name__ == "__main__":
    main()

"""crop="face": the detector on a real photo, the twin's true face boxes, the person fallback for photos
the detector misses, the crop itself, and a face_crop run whose model crops the same way at predict time."""
import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.data import faces
from fastmask.data.cache import fit_image
from fastmask.errors import FastmaskError

from conftest import in_process

pytest.importorskip("facenet_pytorch")

# matplotlib's sample photo (a dependency already): Grace Hopper's face, brow to chin, marked by eye on 512x600
HOPPER = "grace_hopper.jpg"
HOPPER_FACE = (178 / 512, 125 / 600, 352 / 512, 335 / 600)
TINY = ["--set", "arch=test_resnet", "--set", "size=32,24", "--set", "epochs=1", "--set", "bs=16",
        "--set", "pretrained=false"]


def test_the_detector_finds_the_face_in_a_real_photo():
    import matplotlib.cbook as cbook

    from fastmask.data.layout import load_image
    box = faces.detect_image(load_image(cbook.get_sample_data(HOPPER, asfileobj=False)))
    assert box is not None and faces.iou(box, HOPPER_FACE) > 0.75, box


def test_iou_and_the_crop_region_by_hand():
    assert faces.iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)  # overlap 1, union 4 + 4 - 1
    assert faces.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0
    # a 0.2 x 0.4 box at (0.4, 0.3) on 100 x 200 pixels, grown by a quarter of its size on each side
    assert faces.crop_region((0.4, 0.3, 0.6, 0.7), 0.25, 100, 200) == (35, 40, 65, 160)
    assert faces.crop_region((0.0, 0.0, 0.5, 0.5), 0.5, 100, 100) == (0, 0, 75, 75)  # kept inside the photo


def test_a_face_crop_takes_the_box_with_its_margin():
    im = Image.new("RGB", (100, 200), (0, 0, 255))
    im.paste((255, 0, 0), (40, 60, 60, 140))  # the "face": red, 20 x 80 pixels at (40, 60)
    out = fit_image(im, (16, 8), "face:0", box=(0.4, 0.3, 0.6, 0.7))
    assert out.shape == (16, 8, 3) and (out[..., 0] > 200).all() and (out[..., 2] < 50).all()
    wide = fit_image(im, (16, 8), "face:0.5", box=(0.4, 0.3, 0.6, 0.7))  # half the box's size more each side
    assert (wide[..., 2] > 200).any() and (wide[8, 4, 0] > 200)


def test_photos_the_detector_misses_take_the_persons_box_then_the_typical_one(monkeypatch):
    df = pd.DataFrame({"path": ["a1", "a2", "a3", "b1", "c1"], "person": ["a", "a", "a", "b", "c"]})
    found = np.array([[0.1, 0.1, 0.5, 0.5], [0.3, 0.2, 0.7, 0.6], [np.nan] * 4, [np.nan] * 4,
                      [0.2, 0.4, 0.6, 0.9]])
    monkeypatch.setattr(faces, "detect", lambda paths, progress=True: found)
    boxes, counts, typical = faces.boxes_for(df)
    assert boxes["a1"] == (0.1, 0.1, 0.5, 0.5) and boxes["a3"] == pytest.approx((0.2, 0.15, 0.6, 0.55))  # a's median
    assert typical == pytest.approx((0.2, 0.2, 0.6, 0.6)) and boxes["b1"] == typical  # median of the 3 detected
    assert counts == {"detected": 3, "person": 1, "typical": 1}
    monkeypatch.setattr(faces, "detect", lambda paths, progress=True: np.full((5, 4), np.nan))
    assert faces.boxes_for(df)[2] == faces.CENTRE  # no face found anywhere


def test_the_twin_writes_each_photos_true_face_box(tmp_path):
    from fastmask.data.layout import read_train
    from fastmask.twin import make_twin
    root = make_twin(tmp_path / "twin", people=6, eval_people=2, seed=4, size=(192, 256), progress=False)
    truth = pd.read_csv(root / "faces.csv", dtype={"folder": str})
    df = read_train(root / "train")
    assert sorted(str(root / "train" / "images" / f / n) for f, n in zip(truth["folder"], truth["file"])) == sorted(
        df["path"])
    found = faces.detect(df["path"], progress=False)
    true_of = {str(root / "train" / "images" / f / n): (x0, y0, x1, y1)
               for f, n, x0, y0, x1, y1 in truth.itertuples(index=False)}
    hits = [faces.iou(tuple(b), true_of[p]) for p, b in zip(df["path"], found) if not np.isnan(b).any()]
    assert hits and np.mean(hits) > 0.5, hits  # where the detector finds a twin face, it is the drawn one


def test_crop_face_without_the_detector_is_one_line_before_any_data(monkeypatch, tmp_path):
    monkeypatch.setattr(faces, "_detector", None)
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    p = in_process("run", "recipes/face_crop.py", "--data", tmp_path / "nowhere", "--runs", tmp_path / "runs")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "pip install" in p.stderr and "[face]" in p.stderr
    with pytest.raises(FastmaskError, match="face detector"):
        faces.detector()


def test_a_face_crop_run_reports_its_boxes_and_its_model_crops_at_predict_time(tmp_path):
    from fastmask.twin import make_twin
    twin = make_twin(tmp_path / "twin", people=10, eval_people=2, seed=5, size=(192, 256), progress=False)
    runs = tmp_path / "runs"
    p = in_process("run", "recipes/face_crop.py", "--no-parent", *TINY, "--data", twin, "--runs", runs)
    assert p.returncode == 0, p.stderr[-2000:]
    (d,) = runs.iterdir()
    m = json.loads((d / "metrics.json").read_text())
    n = sum(m["face_boxes"].values())
    assert n == 70 and set(m["face_boxes"]) == {"detected", "person", "typical"}
    assert f"**Face crop.** Boxes for the {n} photos: {m['face_boxes']['detected']} (" in (d / "card.md").read_text()
    spec = json.loads((d / "model.json").read_text())
    assert spec["crop"] == "face:0.2" and len(spec["face_fallback"]) == 4  # eval photos' fallback travels along
    out = tmp_path / "submission.csv"
    q = in_process("predict", d, "--eval", twin, "--out", out, "--tta", "1")
    assert q.returncode == 0, q.stderr[-2000:]
    assert len(pd.read_csv(out)) == 14


FORKED = """
import sys
import numpy as np, torch
import matplotlib.cbook as cbook
from torch.utils.data import DataLoader
from fastmask.data.cache import Prepare
photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
prep = Prepare((48, 40), "face")
here = np.asarray(prep(photo))  # the detector made and run in this process first, as a REPL would have
class Photos(torch.utils.data.Dataset):
    def __len__(self): return 4
    def __getitem__(self, i): return torch.from_numpy(np.asarray(prep(photo)).copy())
got = torch.cat(list(DataLoader(Photos(), batch_size=2, num_workers=2))).numpy()
print("same" if all((g == here).all() for g in got) else "differs")
"""


def test_faces_are_found_the_same_in_forked_dataloader_workers():
    """A photo with no saved box (an eval photo) has its face found where Prepare runs: in DataLoader workers
    forked after the parent used the detector (test_dl(num_workers=2) in a REPL). torch after a fork can hang;
    a new process with a time limit turns a hang into a failure."""
    import subprocess
    r = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "same", r.stderr[-2000:]

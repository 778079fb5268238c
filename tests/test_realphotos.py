"""The loader on real photos (tests/data/realphotos: a handful from ../shared/realphotos, one of every format and
mode the pool holds: JPEG, PNG RGB, PNG RGBA, PNG palette with transparency, WEBP, and a 30x40 px thumbnail),
laid out as the competition's folders, as a user's own photos would be."""
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.data import layout
from fastmask.data.cache import prepare

PHOTOS = Path(__file__).parent / "data" / "realphotos"
MASKED = sorted((PHOTOS / "with_mask").iterdir())
UNMASKED = sorted((PHOTOS / "without_mask").iterdir())
STEMS = ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask"]
PEOPLE = [("000010", "female", 19), ("000011", "male", 56), ("000012", "female", 60), ("000013", "male", 33)]


def test_fixture_holds_every_format_and_mode():
    seen = set()
    for p in [*MASKED, *UNMASKED]:
        with Image.open(p) as im:
            seen.add((im.format, im.mode, "transparency" in im.info))
    assert seen >= {("JPEG", "RGB", False), ("PNG", "RGB", False), ("PNG", "RGBA", False), ("PNG", "P", True),
                    ("WEBP", "RGB", False)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Four people; person i's masked photos are the six fixture photos rotated by i (so each photo sits under
    every stem once or more), and their normal photo one of the two unmasked ones."""
    root = tmp_path_factory.mktemp("real") / "train"
    rows = []
    for i, (pid, gender, age) in enumerate(PEOPLE):
        folder = root / "images" / f"{pid}_{gender}_Asian_{age}"
        folder.mkdir(parents=True)
        for k, stem in enumerate(STEMS):
            src = MASKED[(k + i) % len(MASKED)]
            shutil.copyfile(src, folder / (stem + src.suffix))
        src = UNMASKED[i % len(UNMASKED)]
        shutil.copyfile(src, folder / ("normal" + src.suffix))
        rows.append(dict(id=pid, gender=gender, race="Asian", age=age, path=folder.name))
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return root


def test_read_train_takes_every_format(tree):
    df = layout.read_train(tree)
    assert len(df) == 7 * len(PEOPLE)
    assert set(df["path"].map(lambda f: Path(f).suffix)) == {".webp", ".png", ".jpeg"}
    # the mask status comes from the stem whatever the extension: person 000011's mask1 is the second fixture photo
    row = df[(df["person"] == "000011") & (df["path"].map(lambda f: Path(f).stem) == "mask1")].iloc[0]
    assert Path(row["path"]).suffix == MASKED[1].suffix and row["mask"] == "wear"
    normal = df[df["path"].map(lambda f: Path(f).stem) == "normal"]
    assert (normal["mask"] == "not_wear").all() and len(normal) == len(PEOPLE)
    # class code = mask*6 + gender*3 + age group: female 60 unmasked = 2*6 + 1*3 + 2
    assert normal[normal["person"] == "000012"]["label"].item() == 17


@pytest.mark.parametrize("path", [*MASKED, *UNMASKED], ids=lambda p: p.name)
def test_every_photo_decodes_upright_rgb_without_warnings(path):
    with Image.open(path) as im:
        size = im.size
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's "palette with transparency" warning is noise to a user
        im = layout.load_image(path)
        arr = prepare(path, (64, 48))
    assert im.mode == "RGB" and im.size == size
    assert arr.shape == (64, 48, 3) and arr.dtype == np.uint8


def test_transparent_pixels_go_black():
    path = PHOTOS / "with_mask" / "0004.png"  # palette image whose transparency is a byte table
    with Image.open(path) as im:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    rgb = np.asarray(layout.load_image(path))
    assert (alpha == 0).sum() > 1000  # the fixture really has a transparent background
    assert (rgb[alpha == 0] == 0).all()
    opaque = rgb[alpha == 255]
    assert opaque.mean() > 20  # and the face is not blacked out with it


def test_a_batch_of_real_photos(tree):
    from fastmask.data.dls import build_dls
    from fastmask.recipe import Recipe
    df = layout.read_train(tree)
    dls = build_dls(Recipe(arch="test_resnet", size=(64, 48), bs=4, valid_pct=0.25, augment="light",
                           pretrained=False), df)
    x, y = dls.one_batch()
    assert tuple(x.shape) == (4, 3, 64, 48)
    assert len(dls.valid.items["person"].unique()) == 1  # one of four people validates, whole

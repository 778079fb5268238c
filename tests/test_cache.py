import pickle
import threading

import numpy as np
from PIL import Image

from fastmask.data import cache
from fastmask.data.cache import Prepare, build, prepare


def photos(folder, n=5, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        out.append(str(p))
    return out


def test_cached_pixels_equal_prepared_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img")
    arr = build(paths, (16, 12), crop=0.8, progress=False, workers=1)
    assert arr.shape == (5, 16, 12, 3) and arr.dtype == np.uint8
    for i, p in enumerate(paths):
        assert np.array_equal(arr[i], prepare(p, (16, 12), 0.8))
    t = Prepare((16, 12), 0.8, paths, arr)
    assert np.array_equal(np.asarray(t(paths[2])), arr[2])
    outside = photos(tmp_path / "other", n=1)[0]  # not cached: prepared from disk the same way
    assert np.array_equal(np.asarray(t(outside)), prepare(outside, (16, 12), 0.8))


def test_reused_then_invalidated_when_a_source_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img")
    build(paths, (8, 6), progress=False, workers=1)
    calls = []
    monkeypatch.setattr(cache, "_prepare_many", lambda a: calls.append(1) or np.stack([prepare(p, *a[1:]) for p in a[0]]))
    build(paths, (8, 6), progress=False, workers=1)
    assert calls == []  # second run reuses the file
    Image.new("RGB", (40, 30), "red").save(paths[0])
    arr = build(paths, (8, 6), progress=False, workers=1)
    assert calls and (arr[0] == [255, 0, 0]).all()
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2 and not list((tmp_path / "c").glob(".*"))


def test_two_builders_at_once_both_get_a_whole_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img", n=20)
    got = [None, None]
    ts = [threading.Thread(target=lambda i=i: got.__setitem__(i, np.array(build(paths, (8, 6), progress=False, workers=1))))
          for i in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert np.array_equal(got[0], got[1]) and np.array_equal(got[0][3], prepare(paths[3], (8, 6)))


def test_export_does_not_carry_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img")
    t = Prepare((8, 6), None, paths, build(paths, (8, 6), progress=False, workers=1))
    back = pickle.loads(pickle.dumps(t))
    assert back.array is None and back.index == {} and back.size == (8, 6)
    assert np.array_equal(np.asarray(back(paths[1])), np.asarray(t(paths[1])))


def test_crop_keeps_the_centre():
    import os
    import tempfile

    from PIL import Image as I
    a = np.zeros((40, 30, 3), np.uint8)
    a[10:30, 7:22] = 200  # the centre half of height and width, the rest black
    f = os.path.join(tempfile.mkdtemp(), "c.png")
    I.fromarray(a).save(f)
    out = prepare(f, (20, 15), crop=0.5)
    assert out.shape == (20, 15, 3) and (out == 200).all()


def test_crop_is_part_of_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img")
    whole = np.array(build(paths, (8, 6), progress=False, workers=1))
    centre = np.array(build(paths, (8, 6), crop=0.5, progress=False, workers=1))
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2
    assert np.array_equal(centre[1], prepare(paths[1], (8, 6), 0.5))
    assert np.array_equal(whole[1], prepare(paths[1], (8, 6)))
    assert not np.array_equal(whole, centre)


def sideways_jpeg(path):
    """Stored 40 wide x 20 high, left red, right blue, tagged EXIF orientation 6 (rotate 90 clockwise):
    upright it is 20 wide x 40 high, red on top."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20], a[:, 20:] = (255, 0, 0), (0, 0, 255)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, exif=exif.tobytes(), quality=95)
    return str(path)


def test_exif_orientation_in_the_cache_and_in_prepare_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    (tmp_path / "img").mkdir()
    p = sideways_jpeg(tmp_path / "img" / "side.jpg")
    arr = build([p], (16, 8), progress=False, workers=1)
    from_disk = np.asarray(Prepare((16, 8))(p))
    for got in (arr[0], from_disk):
        assert got.shape == (16, 8, 3)
        assert got[1, -1].argmax() == 0 and got[-2, 0].argmax() == 2  # red top right, blue bottom left
    assert np.array_equal(arr[0], from_disk)


def test_at_most_a_window_of_chunks_in_flight():
    """The cache build asks for the next chunk only as it writes one: a 6 GB set never sits in memory."""
    from concurrent.futures import ThreadPoolExecutor

    from fastmask.data.cache import _bounded_map
    asked, ahead = [], []

    def items():
        for i in range(20):
            asked.append(i)
            yield i

    with ThreadPoolExecutor(2) as pool:
        out = []
        for r in _bounded_map(pool, lambda x: x * x, items(), window=3):
            ahead.append(len(asked) - len(out))  # submitted but not yet handed back, counting this one
            out.append(r)
    assert out == [i * i for i in range(20)]  # in order, none lost
    assert max(ahead) == 3

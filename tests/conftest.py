import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: timm must not retry the hub
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if "FASTMASK_CACHE" not in os.environ:  # tests never touch the user's image cache
    import tempfile
    os.environ["FASTMASK_CACHE"] = tempfile.mkdtemp(prefix="fastmask-cache-")

import pytest

TINY = ["--set", "arch=test_resnet", "--set", "size=32,24", "--set", "epochs=1", "--set", "bs=16",
        "--set", "pretrained=false"]


@pytest.fixture(scope="session")
def twin(tmp_path_factory):
    """A tiny synthetic twin (train + eval with answers), made once per test session."""
    from fastmask.twin import make_twin
    root = tmp_path_factory.mktemp("twin") / "twin"
    make_twin(root, people=40, eval_people=10, seed=1, size=(48, 64), progress=False)
    return root

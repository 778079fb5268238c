"""Where a run's images come from: a competition folder, or the synthetic twin made on first use."""
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import pandas as pd

from fastmask.data import layout, relabel
from fastmask.twin import ensure_twin

# The default twin's photos (width, height): half the real 384x512. Its models see 64x48, and drawing,
# decoding and caching quarter-size photos saves ~10 s of the README's first run (measured: 18.5 s -> 9.9 s
# to draw, 3.2 s -> 1.5 s to cache). `python -m fastmask.synth` still writes the real size by default.
DEFAULT_TWIN_SIZE = (192, 256)


def default_data():
    """data/twin in the source checkout (an editable install, as the README sets up), else under the
    current folder: an installed package must not write into site-packages."""
    top = Path(__file__).resolve().parent.parent
    return (top if (top / "pyproject.toml").exists() else Path.cwd()) / "data" / "twin"


@dataclass
class Data:
    train: pd.DataFrame
    eval: Optional[pd.DataFrame]
    answers: Optional[pd.DataFrame]
    root: Path
    relabel: Optional[dict] = None  # the data folder's relabel.csv as applied (config.json's "relabel")

    @cached_property
    def fingerprint(self):
        """`train`'s fingerprint (layout.fingerprint: every file stat'ed), computed once: the run, its
        parent's and the search all ask for it."""
        return layout.fingerprint(self.train)


def load_data(data=None, skip_bad=False, progress=True):
    """The competition folder at `data` (holding train/ and eval/), or the default twin, made on first use."""
    if data is None:
        root = ensure_twin(default_data(), progress=progress, size=DEFAULT_TWIN_SIZE)
    else:
        root = Path(data)
    train_root, eval_root = layout.locate(root)
    df = layout.read_train(train_root, skip_bad=skip_bad)
    df, corrections = relabel.load(root, df)
    ev = layout.read_eval(eval_root) if eval_root else None
    ans = layout.read_answers(eval_root) if eval_root else None
    return Data(df, ev, ans, root, corrections)

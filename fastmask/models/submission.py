"""The evaluation folder and the submission file: where info.csv is, where submission.csv may go (never onto
a file predict reads or a run keeps), and the file itself, `ImageID,ans` in info.csv order, written whole."""
import os
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.labels import N_CLASSES
from fastmask.models.load import expand
from fastmask.models.model_files import files
from fastmask.store.folder import CONFIG, RECIPE_FILE, STATUS


def eval_root(path):
    """The folder holding info.csv: `path` itself or its eval/ (a download or twin root)."""
    p = Path(path)
    if not p.exists():
        raise FastmaskError(f"--eval {p}: no such folder")
    if (p / "info.csv").is_file():
        return p
    if (p / "eval" / "info.csv").is_file():
        return p / "eval"
    raise FastmaskError(f"--eval {p}: holds neither info.csv nor eval/info.csv")


def submission_text(ids, ans):
    ans = np.asarray(ans)
    if len(ids) != len(ans) or not np.issubdtype(ans.dtype, np.integer) or ans.min() < 0 or ans.max() >= N_CLASSES:
        raise ValueError("a submission needs one class id 0..17 per ImageID")
    return pd.DataFrame({"ImageID": list(ids), "ans": ans.astype(int)}).to_csv(index=False)


def check_out(path):
    """FastmaskError naming `path` as given unless a submission can be written there: not a folder, and
    its folder (or, when that is still to be made, the nearest one above it) a writable folder."""
    p = Path(path)
    if p.is_dir():
        raise FastmaskError(f"--out {path}: is a folder; name the file to write, e.g. {p / 'submission.csv'}")
    above = p.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise FastmaskError(f"--out {path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise FastmaskError(f"--out {path}: cannot write in {above} (permission denied or read-only)")


def check_out_reads(out, sources, eval_dir, trust_pickle=False):
    """FastmaskError naming both paths when the submission would land on something predict reads or a run
    keeps: a model file named (or its .json/.safetensors/.pkl companions), any file of a run folder, or any
    file of the eval folder. Symlinks are followed, so another name for the same file is caught too."""
    target = Path(out).resolve()

    def clash(path, what):
        raise FastmaskError(f"--out {out}: would overwrite {what} {path}; write the submission elsewhere")

    root = Path(eval_dir).resolve()
    if root == target or root in target.parents:
        clash(eval_dir, "a file of the eval folder")
    for src in sources:
        for f in expand(src, trust_pickle=True):  # every file a source could mean, trusted or not
            for mate in (*files(f.with_suffix("")), f.with_suffix(".pkl"), f):
                if mate.resolve() == target:
                    clash(mate, "the model file")
    for above in target.parents:
        if (above / STATUS).is_file() or ((above / CONFIG).is_file() and (above / RECIPE_FILE).is_file()):
            clash(above, "a file of the run folder")


def write_submission(ids, ans, path):
    """`ImageID,ans` (info.csv order) written atomically: an interrupted write leaves no half file.
    Its folder is made when missing. A failed write names `path`, not the temp file."""
    path = Path(path)
    text = submission_text(ids, ans)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    except OSError as e:
        raise FastmaskError(f"--out {path}: {e.strerror}") from None
    return path

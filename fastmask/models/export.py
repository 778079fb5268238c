"""One trained learner as files: safetensors + JSON (no code, what predict opens) and fastai's pickle."""
import sys
from pathlib import Path

from fastcore.basics import patch

from fastmask.errors import FastmaskError
from fastmask.models.model_files import save
from fastmask.models.pickles import export_pickle
from fastmask.recipe import Recipe


def export(learn, path, recipe):
    """One model's files, each through a temp name: STEM.safetensors + STEM.json (no code: what predict
    opens) and STEM.pkl at `path` (fastai's load_learner; a pickle, for files one trusts)."""
    try:
        save(learn, recipe, path.with_suffix(""))
    except FastmaskError as e:  # e.g. an A.Compose holding a Lambda: the model is still kept, as a pickle
        print(f"fastmask: warning: {path.stem}.safetensors not written ({e}); predict needs --trust-pickle "
              f"for {path.name}", file=sys.stderr)
    export_pickle(learn, path)


@patch
def export(self: Recipe, learn, path):  # noqa: F811  (@patch attaches it to Recipe; the name stays bound above)
    """`learn` as a run exports it: PATH.pkl (fastai's load_learner) beside PATH.safetensors and
    PATH.json (what `fastmask.predict` opens without unpickling), without training callbacks."""
    export(learn, Path(path).with_suffix(".pkl"), self)  # the module's export: @patch keeps that name bound to it

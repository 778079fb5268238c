"""fastmask: fastai rapid prototyping for the 18-class mask / gender / age face task."""
import importlib
import importlib.abc
import importlib.util
import os
import sys

# albumentations otherwise checks PyPI on import: set once here, before any layer can import it
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

from fastmask.recipe import Recipe  # noqa: F401,E402  (standard library only: import stays cheap)
from fastmask.recipe_file import load_recipe  # noqa: F401,E402

# Where modules lived before the package was split into layers. A learner exported then (model.pkl)
# names its classes by these paths, so they stay importable as aliases of their new homes.
MOVED = {"cache": "data.cache", "augment": "data.augment", "sampling": "data.sampling",
         "heads": "learn.heads", "losses": "learn.losses", "metrics": "learn.metrics", "mixing": "learn.mixing",
         "precision": "learn.precision", "model": "learn.model", "train": "learn.callbacks",
         "safe_model": "models.model_files", "infer": "models.infer", "record": "store.folder",
         # the runs/ folder before it was split by concern
         "runs.model_files": "models.model_files", "runs.infer": "models.infer", "runs.export": "models.export",
         "runs.folder": "store.folder", "runs.index": "store.index"}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        old = name.removeprefix("fastmask.")
        if name.startswith("fastmask.") and old in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("fastmask." + MOVED[spec.name.removeprefix("fastmask.")])

    def exec_module(self, module):
        pass


sys.meta_path.append(_Moved())

"""The REPL's front door: `from fastmask.repl import load_recipe`, then `r.dls()`, `r.learner()` and
`r.export(learn, "mine")` on the recipe, the same objects `python -m fastmask.run` trains and exports.

Importing this module imports the layers that attach those methods to `Recipe` (fastcore's @patch, as
`fastai.vision.all` brings in `fit_one_cycle` by importing `callback/schedule`); `fastmask.load_recipe`
alone stays free of torch and fastai, for recipe files and commands that only read a recipe."""
import fastmask.data.dls  # noqa: F401  (attaches Recipe.dls)
import fastmask.learn.build  # noqa: F401  (attaches Recipe.learner)
import fastmask.models.export  # noqa: F401  (attaches Recipe.export)
from fastmask.recipe import Recipe, parse_sets
from fastmask.recipe_file import load_recipe

__all__ = ["Recipe", "load_recipe", "parse_sets"]

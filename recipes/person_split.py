"""Splitting by person, with early stopping, gives validation scores that hold on the holdout."""
from recipes.baseline import recipe as parent

recipe = parent.but(split="person", patience=3)

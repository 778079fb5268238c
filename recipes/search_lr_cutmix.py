"""Searching the learning rate and the CutMix variant around albu_light finds a recipe that beats it."""
from recipes.albu_light import recipe as parent

recipe = parent.but()  # the base point, albu_light as it is; `search` is what the trials vary
search = {"lr": ("log", 1e-3, 2e-2), "cutmix": [None, "box", "halves"]}

"""Copying rare-class training images (each copy augmented differently) raises macro F1 over person_split's
weighted sampling."""
from recipes.person_split import recipe as parent

recipe = parent.but(sampler="oversample")

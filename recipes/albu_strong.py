"""Stronger albumentations (colour jitter, blur or noise, small holes, on top of the default light flip, affine
and brightness) raise macro F1 over person_split's light augmentation."""
from recipes.person_split import recipe as parent

recipe = parent.but(augment="strong")

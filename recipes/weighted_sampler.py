"""Drawing training images with inverse-class-frequency weights raises macro F1 over person_split (the retrospective's imbalanced sampler)."""
from recipes.person_split import recipe as parent

recipe = parent.but(sampler="weighted")

"""Light albumentations (flip, small affine, brightness) raise macro F1 over person_split."""
from recipes.person_split import recipe as parent

recipe = parent.but(augment="light")

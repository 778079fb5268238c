"""CutMix that swaps the left or right half of the face, so the mixed region is face not background, raises macro F1 over light augmentation."""
from recipes.albu_light import recipe as parent

recipe = parent.but(cutmix="halves")

"""CutMix that swaps the left or right half of the face, so the mixed region is face not background, raises macro F1 over light augmentation.

The partner has the same mask status, and half of the batches are mixed (mix_prob=0.5), as in oversample_cutmix."""
from recipes.person_split import recipe as parent

recipe = parent.but(cutmix="halves", mix_prob=0.5)

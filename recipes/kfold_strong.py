"""Stronger albumentations in each of the five folds raise the CV macro F1 over k-fold's light augmentation, and
give test-time augmentation more to average: predict the fold ensemble with TTA by

    python -m fastmask.predict runs/<stamp>-kfold_strong --eval data/twin --tta 4 --out submission.csv

(the run's own holdout figure is the plain soft vote; the command prints the TTA one)."""
from recipes.kfold import recipe as parent

recipe = parent.but(augment="strong")

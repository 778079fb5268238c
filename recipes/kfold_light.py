"""Light albumentations in each of the five folds raise the CV macro F1 over plain k-fold, and give
test-time augmentation something to average: predict the fold ensemble with TTA by

    python -m fastmask.predict runs/<stamp>-kfold_light --eval data/twin --tta 4 --out submission.csv

(the run's own holdout figure is the plain soft vote; the command prints the TTA one)."""
from recipes.kfold import recipe as parent

recipe = parent.but(augment="light")

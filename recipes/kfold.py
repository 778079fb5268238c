"""Five person-grouped folds measure macro F1 with a spread (CV mean ± std) that one person_split
cannot give, score every training image out of fold (oof.csv, suspects.csv), and their soft-voted
ensemble of five models beats a single person_split model on the holdout."""
from recipes.person_split import recipe as parent

recipe = parent.but(split="kfold:5")

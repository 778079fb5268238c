"""Model files and inference: safetensors + JSON (and the pickled learner), export, load, predict, TTA and
soft votes, submission.csv."""

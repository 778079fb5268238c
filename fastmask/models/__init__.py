"""Model files and inference: safetensors + JSON (model_files) and the pickled learner (pickles), export, load,
predict (TTA), votes, submission.csv."""

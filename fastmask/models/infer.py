"""Where prediction lived before it was split by concern: loading (`fastmask.models.load`), the pickle and
its refusal (`models.pickles`), predicting with TTA (`models.predict`), votes (`models.votes`) and the
submission file (`models.submission`). Code written against `fastmask.models.infer` (or the older
`fastmask.infer` and `fastmask.runs.infer`, see fastmask.MOVED) finds the same names here."""
from fastmask.models.load import PICKLE_GLOB, SAFE_GLOB, Model, class_codes, expand, is_safe, load, load_models
from fastmask.models.pickles import NEEDS_FASTMASK, MissingModule, export_pickle, load_pickle, needs_fastmask, refusal
from fastmask.models.predict import Prediction, predict, predict_probs, train_only_tfms, tta_dl
from fastmask.models.submission import check_out, check_out_reads, eval_root, submission_text, write_submission
from fastmask.models.votes import hard_vote, soft_vote, vote

__all__ = ["PICKLE_GLOB", "SAFE_GLOB", "Model", "class_codes", "expand", "is_safe", "load", "load_models",
           "NEEDS_FASTMASK", "MissingModule", "export_pickle", "load_pickle", "needs_fastmask", "refusal",
           "Prediction", "predict", "predict_probs", "train_only_tfms", "tta_dl",
           "check_out", "check_out_reads", "eval_root", "submission_text", "write_submission",
           "hard_vote", "soft_vote", "vote"]

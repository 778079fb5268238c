"""Mixed precision that says what it does: fastai's MixedPrecision only knows CUDA and silently trains
fp32 elsewhere, so CPU bf16 gets its own small autocast callback."""
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision

from .errors import FastmaskError

CHOICES = ("auto", "fp32", "bf16", "fp16")


class CPUAutocast(Callback):
    "bf16 autocast around the forward pass on CPU; the loss and the weights stay fp32"
    order = 10

    def before_batch(self):
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16)
        self.autocast.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()
        self.autocast.__exit__(None, None, None)

    def after_cancel_batch(self):
        self.autocast.__exit__(None, None, None)


def precision_callbacks(precision, device=None):
    """(callbacks, one line saying what runs) for a recipe's `precision` field."""
    cuda = (device.type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    if precision not in CHOICES:
        raise FastmaskError(f"recipe field precision: {precision!r} is not one of {', '.join(CHOICES)}")
    if precision == "fp32" or (precision == "auto" and not cuda):
        return [], "precision: fp32" + (" (auto: no GPU)" if precision == "auto" else "")
    if cuda:
        if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
            return [MixedPrecision(amp_mode="bf16")], "precision: bf16 autocast on CUDA"
        return [MixedPrecision(amp_mode="fp16")], "precision: fp16 autocast with a grad scaler on CUDA"
    if precision == "fp16":
        raise FastmaskError("recipe field precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    return [CPUAutocast()], "precision: bf16 autocast on CPU (often slower than fp32 on few cores: measure)"

"""Mixed precision that says what it does: fastai's MixedPrecision only knows CUDA and silently trains
fp32 elsewhere, so CPU bf16 gets its own small autocast callback."""
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision

from fastmask.choices import Choices
from fastmask.errors import FastmaskError


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


PRECISIONS = Choices("precision")  # the recipe field's names, registered on what each one runs


def precision_callbacks(precision, device=None):
    """(callbacks, one line saying what runs) for a recipe's `precision` field."""
    cuda = (device.type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    return PRECISIONS[precision](cuda)


@PRECISIONS.register("auto")
def _auto(cuda):
    """Autocast on a GPU (bf16 where it has it, else fp16), fp32 elsewhere."""
    if not cuda:
        return [], "precision: fp32 (auto: no GPU)"
    return _bf16(cuda) if torch.cuda.is_bf16_supported() else _fp16(cuda)


@PRECISIONS.register("fp32")
def _fp32(cuda):
    return [], "precision: fp32"


@PRECISIONS.register("bf16")
def _bf16(cuda):
    if cuda:
        return [MixedPrecision(amp_mode="bf16")], "precision: bf16 autocast on CUDA"
    return [CPUAutocast()], "precision: bf16 autocast on CPU (often slower than fp32 on few cores: measure)"


@PRECISIONS.register("fp16")
def _fp16(cuda):
    if not cuda:
        raise FastmaskError("recipe field precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    return [MixedPrecision(amp_mode="fp16")], "precision: fp16 autocast with a grad scaler on CUDA"

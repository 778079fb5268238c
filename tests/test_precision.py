import pytest
import torch

from fastmask.errors import FastmaskError
from fastmask.learn.precision import CPUAutocast, precision_callbacks

CPU = torch.device("cpu")


def test_cpu_choices_say_what_runs():
    cbs, line = precision_callbacks("auto", CPU)
    assert cbs == [] and "fp32" in line and "no GPU" in line
    cbs, line = precision_callbacks("bf16", CPU)
    assert isinstance(cbs[0], CPUAutocast) and "bf16 autocast on CPU" in line
    with pytest.raises(FastmaskError, match="fp16 needs a GPU"):
        precision_callbacks("fp16", CPU)
    with pytest.raises(FastmaskError, match="precision"):
        precision_callbacks("half", CPU)


def test_cpu_autocast_runs_the_forward_in_bf16():
    class Fake:  # the attributes fastai's Callback reads through `self.learn`
        pass
    learn, seen = Fake(), {}
    cb = CPUAutocast()
    cb.learn = learn
    lin = torch.nn.Linear(4, 2)
    cb.before_batch()
    seen["dtype"] = lin(torch.randn(3, 4)).dtype
    learn.pred = lin(torch.randn(3, 4))
    cb.after_pred()
    assert seen["dtype"] == torch.bfloat16 and learn.pred.dtype == torch.float32
    assert lin(torch.randn(3, 4)).dtype == torch.float32  # autocast closed after the forward

"""Any timm model at the recipe's size: transformers (ViT, DeiT, Swin, EVA, CoAtNet, MaxViT) are built for the
recipe's (height, width) by every head, a size a model cannot take is one line naming the nearest it can (before
any data is read), a weights file saved at 224 loads into a model built for 64x48, and an exported ViT predicts
at its size. The real tiny timm models, from scratch (no network), one training batch each."""
import json
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
from fastai.callback.core import Callback, CancelFitException

from fastmask.data.dls import build_dls
from fastmask.data.load import load_data
from fastmask.errors import FastmaskError
from fastmask.learn import model as timm_model
from fastmask.learn.build import build_learner, preflight
from fastmask.repl import load_recipe, parse_sets

from conftest import in_process

REPO = Path(__file__).resolve().parent.parent
SMALL = ["epochs=1", "bs=8", "pretrained=false", "patience=none"]


@pytest.fixture(scope="module")
def data(twin):
    return load_data(twin, progress=False)


def recipe(arch, size, *sets):
    return load_recipe(REPO / "recipes" / "person_split.py",
                       parse_sets([f"arch={arch}", f"size={size[0]},{size[1]}", *SMALL, *sets]))


class OneStep(Callback):
    """Stops the fit after the first optimiser step, keeping its loss and whether the body got gradients."""
    order = 99

    def after_step(self):
        self.step_loss = float(self.learn.loss.detach())
        self.body_grads = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in bodies_params(self.model))
        raise CancelFitException


def bodies_params(model):
    tasks = getattr(model, "tasks", [model])  # heads="separate": three whole models
    return [p for m in tasks for p in m[0].parameters()]


def one_step(learn, tmp_path):
    learn.path = tmp_path
    spy = OneStep()
    learn.fit(1, 1e-3, cbs=spy)
    return spy


@pytest.mark.parametrize("arch,size,heads", [
    ("vit_tiny_patch16_224", (64, 48), "single"),
    ("vit_tiny_patch16_224", (48, 32), "separate"),
    ("deit_tiny_patch16_224", (64, 48), "single"),
    ("swin_tiny_patch4_window7_224", (64, 48), "single"),
    ("swin_tiny_patch4_window7_224", (64, 48), "multi"),  # channels-last features: fastai's head must not pool them
    ("eva02_tiny_patch14_224", (56, 42), "multi"),
    ("coatnet_nano_rw_224", (64, 32), "single"),
    ("maxvit_pico_rw_256", (64, 48), "multi"),
])
def test_a_transformer_trains_a_batch_at_the_recipes_non_square_size(arch, size, heads, data, tmp_path):
    r = recipe(arch, size, f"heads={heads}")
    preflight(r)  # the size check passes: it takes this size
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None)
    xb, _ = learn.dls.one_batch()
    assert tuple(xb.shape[-2:]) == size
    with torch.no_grad():
        assert learn.model.eval()(xb[:2]).shape == (2, 18)
    spy = one_step(learn, tmp_path)
    assert torch.isfinite(torch.tensor(spy.step_loss)) and spy.body_grads


@pytest.mark.parametrize("arch", ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"])
def test_weights_saved_at_224_load_into_a_model_built_for_64x48(arch, data, tmp_path):
    from safetensors.torch import save_file
    ref = timm.create_model(arch, pretrained=False).state_dict()  # at its default 224x224
    f = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in ref.items()}, str(f))
    r = recipe(arch, (64, 48), f"pretrained={f}")
    preflight(r)
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None)
    body = learn.model[0].model
    assert torch.equal(body.patch_embed.proj.weight, ref["patch_embed.proj.weight"])
    if arch.startswith("vit"):  # position embeddings resampled from 14x14 patches to 4x3, the class token's kept
        assert ref["pos_embed"].shape == (1, 1 + 14 * 14, 192) and body.pos_embed.shape == (1, 1 + 4 * 3, 192)
        assert torch.equal(body.pos_embed[:, 0], ref["pos_embed"][:, 0])
    assert torch.isfinite(torch.tensor(one_step(learn, tmp_path).step_loss))


def test_pretrained_true_offline_is_one_line_for_a_transformer(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FastmaskError, match=r"--set pretrained=/path/to/vit_tiny_patch16_224\.safetensors"):
        preflight(recipe("vit_tiny_patch16_224", (64, 48), "pretrained=true"))


def test_a_size_the_model_cannot_take_names_the_nearest_one_once(monkeypatch):
    # CoAtNet-rw runs only at sides that are multiples of 32 (its attention partitions are a 32nd of the
    # input): 48 lies halfway between 32 and 64 (a tie goes up); 100 -> 96 and 70 -> 64 each to the nearest
    for size, nearest in [((64, 48), "64,64"), ((100, 70), "96,64")]:
        with pytest.raises(FastmaskError) as e:
            timm_model.check_size("coatnet_nano_rw_224", size)
        assert str(e.value) == (f"recipe field size: coatnet_nano_rw_224 cannot run at {size[0]},{size[1]} "
                                f"(height,width); nearest size it takes: {nearest} (--set size={nearest})")
    timm_model.check_size("coatnet_nano_rw_224", (64, 64))
    timm_model.check_size("resnet18", (64, 48))  # a CNN: any size, and no img_size passed to it
    assert timm_model.timm_kwargs("resnet18", (64, 48)) == {}
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("checked again"))
    with pytest.raises(FastmaskError, match="nearest size it takes: 64,64"):  # asked once per process
        timm_model.check_size("coatnet_nano_rw_224", (64, 48))


def test_the_run_command_refuses_the_size_in_one_line_before_any_data(tmp_path):
    runs = tmp_path / "runs"
    p = in_process("run", "recipes/person_split.py", "--no-parent", "--set", "arch=coatnet_nano_rw_224",
                   "--set", "size=64,48", "--set", "epochs=1", "--set", "pretrained=false",
                   "--data", tmp_path / "nowhere", "--runs", runs)  # no data there: the size fails first
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert "recipe field size: coatnet_nano_rw_224" in p.stderr and "--set size=64,64" in p.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_an_exported_vit_predicts_with_tta_at_its_size(twin, tmp_path):
    runs = tmp_path / "runs"
    p = in_process("run", "recipes/person_split.py", "--no-parent", "--set", "arch=vit_tiny_patch16_224",
                   "--set", "size=48,32", *[a for s in SMALL for a in ("--set", s)], "--data", twin, "--runs", runs)
    assert p.returncode == 0, p.stderr[-3000:]
    (d,) = [x for x in runs.iterdir() if x.is_dir()]
    assert json.loads((d / "model.json").read_text())["size"] == [48, 32]
    from fastmask.models.model_files import load
    body = load(d / "model.json").model[0].model  # rebuilt from model.json: at 48x32, the weights strictly loaded
    assert tuple(body.patch_embed.img_size) == (48, 32)
    # the body is built at the size the images are fed at, even where the recipe fields lack it (another version's)
    spec = json.loads((d / "model.json").read_text())
    del spec["recipe"]["size"]
    (tmp_path / "other.json").write_text(json.dumps(spec))
    (tmp_path / "other.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    assert tuple(load(tmp_path / "other.json").model[0].model.patch_embed.img_size) == (48, 32)
    out = tmp_path / "submission.csv"
    q = in_process("predict", d, "--eval", twin, "--out", out, "--tta", "2")
    assert q.returncode == 0, q.stderr[-3000:]
    info = pd.read_csv(twin / "eval" / "info.csv", dtype=str)
    assert pd.read_csv(out, dtype={"ImageID": str}).ImageID.tolist() == info.ImageID.tolist()


def test_the_repl_learner_refuses_the_size_too(twin):
    """r.learner() in a REPL meets the same check as a run (preflight is the command's; build_learner the REPL's)."""
    from fastmask.repl import load_recipe
    r = load_recipe(REPO / "recipes" / "person_split.py",
                    {"arch": "coatnet_nano_rw_224", "size": (64, 48), "pretrained": False})
    with pytest.raises(FastmaskError, match=r"nearest size it takes: 64,64 \(--set size=64,64\)"):
        r.learner(data=twin)

"""Data-parallel training on several GPUs (or CPU processes) through fastai's `distrib_ctx`
(fastai.distributed + accelerate).

    accelerate launch -m fastmask.run RECIPE.py [--set ...]                    # every GPU accelerate is set up for
    accelerate launch --multi_gpu --num_processes 4 -m fastmask.run RECIPE.py
    accelerate launch --multi_gpu --num_processes 2 -m fastmask.run RECIPE.py  # on CPU too: gloo, no GPU needed

On a machine without CUDA, `accelerate launch --num_processes 2` alone starts ONE process (accelerate
needs MPI for several CPU processes); `--multi_gpu` (torchrun underneath) or `torchrun --nproc_per_node 2
-m fastmask.run` start two, and fastmask joins them over gloo.

`accelerate launch` (or `torchrun`) starts one process per GPU and sets RANK / WORLD_SIZE. Every process
builds the same DataLoaders and fits inside `learn.distrib_ctx()`: fastai's DistributedDL gives each rank
its slice of every batch, so `bs` is per GPU and the effective batch is bs x processes (the lr is not
scaled). Validation metrics are gathered over all ranks, so early stopping and the best epoch agree.
Rank 0 alone makes the run folder and writes the records, the card and the export; the other ranks train
beside it, keep the same best epoch (the metrics are gathered over all ranks) and write nothing.

A plain `python -m fastmask.run` (or accelerate with one process) is the single-process path: nothing here
imports accelerate or fastai.distributed unless WORLD_SIZE > 1."""
import contextlib
import os

from fastmask.errors import FastmaskError


def rank():
    """This process's global rank (RANK, set by accelerate launch / torchrun); 0 when alone."""
    return int(os.environ.get("RANK", 0) or 0)


def world_size():
    """How many processes train together (WORLD_SIZE); 1 when alone."""
    return int(os.environ.get("WORLD_SIZE", 1) or 1)


def is_main():
    """True in the process that writes: rank 0, or the only process."""
    return rank() == 0


def is_distributed():
    return world_size() > 1


def setup(recipe=None):
    """Check and join a multi-process run (a no-op alone): accelerate installed, a fixed lr. Joining
    (accelerate's PartialState) starts the process group before any DataLoader picks its device: NCCL with
    this rank's GPU pinned, or gloo on CPU when torch sees no CUDA (slower than one process on the same
    cores, but the same code path as several GPUs, so it can run in the tests)."""
    if not is_distributed():
        return
    try:
        from accelerate import PartialState
    except ImportError:
        raise FastmaskError(f"WORLD_SIZE={world_size()}: training on several processes needs accelerate; "
                            "pip install 'fastmask[distributed]'") from None
    if recipe is not None and recipe.lr == "find":
        raise FastmaskError("recipe field lr: 'find' would pick a different lr on every rank; run lr_find "
                            "in one process and --set lr=VALUE")
    import torch
    if not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"  # fastai's Accelerator must agree with the state joined here
        PartialState(cpu=True)
        return
    if torch.cuda.device_count() < int(os.environ.get("LOCAL_WORLD_SIZE", world_size()) or 1):
        raise FastmaskError(f"WORLD_SIZE={world_size()}: {torch.cuda.device_count()} CUDA GPU(s) for "
                            f"{os.environ.get('LOCAL_WORLD_SIZE', world_size())} processes on this machine; "
                            "start one process per GPU")
    PartialState()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. generating the twin on first use), then the others; alone: just runs it."""
    if not is_distributed():
        yield
        return
    from accelerate import PartialState
    with PartialState().main_process_first():
        yield


@contextlib.contextmanager
def alone():
    """Rank 0's own work after a fit (validation and holdout predictions, the export): fastai gathers every
    prediction across ranks whenever WORLD_SIZE > 1, and the other ranks are not predicting with it."""
    if not is_distributed():
        yield
        return
    size = os.environ["WORLD_SIZE"]
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        os.environ["WORLD_SIZE"] = size


def share(obj):
    """`obj` as rank 0 has it, on every rank (a broadcast); alone: `obj` itself."""
    if not is_distributed():
        return obj
    import torch.distributed as dist
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def context(learn):
    """fastai's `distrib_ctx` around a fit when several processes train (without SyncBatchNorm, so the
    exported model holds plain BatchNorm and runs anywhere); a no-op alone."""
    if not is_distributed():
        return contextlib.nullcontext(learn)
    import fastai.distributed  # noqa: F401  (patches Learner.distrib_ctx; imports accelerate)
    fastai.distributed.DistributedDL._broadcast = _broadcast
    return learn.distrib_ctx(sync_bn=False)


def _broadcast(self, t, rank):
    """fastai's DistributedDL._broadcast (rank 0's shuffled indices to every rank) on the process group's own
    device: fastai moves the tensor to CUDA, which gloo on CPU has not got."""
    import torch
    import torch.distributed as dist
    on_gpu = dist.get_backend() == "nccl"
    t = torch.tensor(t, dtype=torch.long, device="cuda" if on_gpu else "cpu")
    dist.broadcast(t, rank)
    return t.cpu().tolist()

"""Which torch device a pipeline runs on (imports torch, so only pipelines and the model
loader, when a pipeline has something to load, call it)."""

from __future__ import annotations


def torch_device(setting: str = "auto") -> str:
    """``auto`` means the current CUDA device when a GPU is visible, else CPU; anything else
    is used as given. CUDA is named with its index (``cuda:0``), as people read it."""
    import torch

    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda":
        return f"cuda:{torch.cuda.current_device()}"
    return setting

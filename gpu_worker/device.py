"""Which torch device a pipeline runs on (imports torch, so only pipelines call it)."""

from __future__ import annotations


def torch_device(setting: str = "auto") -> str:
    """``auto`` means CUDA when a GPU is visible, else CPU; anything else is used as given."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting

"""Operator commands against a RunPod endpoint (placeholder until they land)."""


def register(sub) -> None:
    return None

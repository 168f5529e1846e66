"""Ports for the test fixtures: the helpers live in ``deploy.stack.net``."""

from deploy.stack.net import free_port, wait_for_port

__all__ = ["free_port", "wait_for_port"]

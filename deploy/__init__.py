"""Operator tooling for the GPU endpoint, and the local endpoint (``deploy.local``).

``deploy`` imports nothing from ``app``; ``app`` and ``tasks`` import its job-API client.
"""

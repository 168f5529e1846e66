"""The job lifecycle: create, submit, claim, poll, apply status, reconcile, cancel, retry.

Modules import in one direction, bottom first: status_budget, status, claims, submission,
polling, jobs, reconcile. Nothing here imports ``app.web``.
"""

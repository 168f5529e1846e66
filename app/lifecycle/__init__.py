"""The job lifecycle: create, submit, claim, poll, apply status, reconcile, cancel, retry.

Modules import in one direction, bottom first: status_budget, retry, status, polling,
claims, submission, jobs, reconcile (``tests/test_layout.py`` checks it). Nothing here
imports ``app.web``; the words the pages show live there.
"""

"""The GPU worker container: a runpod serverless handler that dispatches on ``input.pipeline``.

Nothing here imports ``app``, ``tasks`` or ``deploy``: this package ships alone in
``Dockerfile.gpu`` and runs on another machine.
"""

"""What the app knows of each GPU endpoint: health snapshots and their diagnosis.

Below the lifecycle: imports neither ``app.lifecycle`` nor ``app.web``.
"""

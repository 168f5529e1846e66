"""Issue 20: what the app knows of the programs that call its API: named tokens and their
quotas, idempotency keys, and the webhooks it sends them (their deliveries run in
``tasks/deliveries.py`` on their own queue)."""

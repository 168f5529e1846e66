"""RunPod itself, as both the web app and the operator tooling see it.

``vocabulary`` names what RunPod's APIs say (job statuses, exit codes, scaler kinds, default
URLs, worker rows); ``jobapi`` is the one job-API client (RunPod or the local endpoint);
``management`` the one management-API client; ``pools`` RunPod's GPU pools; ``diagnosis``
the rules that say why jobs wait. It imports nothing from ``deploy.ops``, ``deploy.local``
or ``app``: all three import it (``tests/test_layout.py`` holds it to that).
"""

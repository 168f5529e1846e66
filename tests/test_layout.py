"""The repository has the shape the design card fixes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_top_level_layout():
    for name in ("app", "tasks", "gpu_worker", "deploy", "tests"):
        assert (ROOT / name / "__init__.py").is_file(), name
    for name in ("requirements.txt", "Procfile", "README.md", "Dockerfile.web", "Dockerfile.gpu"):
        assert (ROOT / name).is_file(), name


def test_gpu_worker_imports_nothing_from_the_app():
    for path in (ROOT / "gpu_worker").rglob("*.py"):
        text = path.read_text()
        for banned in ("from app", "import app", "from tasks", "import tasks", "from deploy"):
            assert banned not in text, f"{path} must not import the web side ({banned})"


def test_deploy_imports_nothing_from_the_app():
    for path in (ROOT / "deploy").rglob("*.py"):
        text = path.read_text()
        assert "from app" not in text and "import app" not in text, path


def test_the_app_imports_nothing_from_the_gpu_worker():
    """The web image ships app/, not gpu_worker/ (and a model module may import anything):
    the app reads pipeline declarations from app/pipelines.json, generated from the worker's."""
    for path in (ROOT / "app").rglob("*.py"):
        text = path.read_text()
        for banned in ("from gpu_worker", "import gpu_worker"):
            assert banned not in text, f"{path} must not import the GPU worker ({banned})"


def test_per_process_clients_live_in_one_services_object():
    """Settings, storage, the job-API clients, Redis, the budget and ``enqueue`` are one
    ``Services`` (``app/services.py``); only the database and Celery keep Flask's own keys."""
    writers = {
        path.relative_to(ROOT).as_posix()
        for folder in ("app", "tasks")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"extensions\[[\"']\w+[\"']\]\s*=", path.read_text())
    }
    assert writers == {"app/db.py", "app/queue.py", "app/services.py"}


def test_the_job_api_client_is_imported_in_one_place():
    """``app/services.py`` builds the job-API clients and re-exports their errors: the rest
    of the app and the tasks take them from there, so moving the client is one import."""
    for folder in ("app", "tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() in JOB_API_IMPORTERS:
                continue
            assert "jobapi" not in path.read_text(), f"{path}: import it from app.services"


# app/endpoint.py and app/diagnosis.py read the endpoint's management side too.
JOB_API_IMPORTERS = {"app/services.py", "app/endpoint.py", "app/diagnosis.py"}

"""The repository has the shape the design card fixes."""

import ast
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


def test_pipeline_declarations_do_not_import_the_model_cache():
    """``ModelSpec`` sits beside the pipeline types: the model cache imports the pipelines
    (for its command line), never the other way round, so there is no import cycle."""
    for path in (ROOT / "gpu_worker" / "pipelines").rglob("*.py"):
        text = path.read_text()
        assert "gpu_worker.model_cache" not in text, f"{path} must not import the model cache"


def test_the_gpu_worker_reads_its_environment_in_its_settings_module():
    """Settings come from one place; left out: the runpod SDK's own log level, and a
    pipeline's own knob read by the pipeline that declares it."""
    allowed = {
        ROOT / "gpu_worker" / "settings.py",
        ROOT / "gpu_worker" / "__main__.py",  # RUNPOD_LOG_LEVEL, the SDK's
        ROOT / "gpu_worker" / "pipelines" / "upscale.py",  # UPSCALE_MODEL
    }
    for path in (ROOT / "gpu_worker").rglob("*.py"):
        if path not in allowed:
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, (
                f"{path}: read the environment in gpu_worker/settings.py"
            )


def _imports(package: str, *modules: str) -> list[str]:
    """Import statements in ``package`` that name one of ``modules`` (``deploy.ops``)."""
    found = []
    for path in (ROOT / package).rglob("*.py"):
        text = path.read_text()
        for module in modules:
            parent, _, child = module.rpartition(".")
            forms = (f"from {module}", f"import {module}", f"from {parent} import {child}")
            found += [f"{path}: {form}" for form in forms if form in text]
    return found


def test_the_web_side_imports_no_operator_tooling_nor_the_local_endpoint():
    """app and tasks reach RunPod through deploy.runpod; deploy.ops is the operator's CLI
    and deploy.local a stand-in endpoint, neither part of what the web app runs."""
    for package in ("app", "tasks"):
        assert not _imports(package, "deploy.ops", "deploy.local")


def test_operator_tooling_and_the_local_endpoint_share_only_deploy_runpod():
    assert not _imports("deploy/ops", "deploy.local")
    assert not _imports("deploy/runpod", "deploy.ops", "deploy.local")


def _python_files(*folders: str):
    for folder in folders:
        yield from (ROOT / folder).rglob("*.py")


def test_the_stack_package_imports_only_deploy():
    """deploy/stack runs the app, Celery and the tests' services by their import strings:
    importing app, tasks or tests would make make run depend on what it starts."""
    for path in (ROOT / "deploy" / "stack").rglob("*.py"):
        text = path.read_text()
        for banned in ("from app", "import app", "from tasks", "import tasks", "from tests"):
            assert banned not in text, f"{path} must not import {banned.split()[-1]}"


def test_bench_imports_the_repo_without_editing_sys_path():
    """``python -m bench ...`` runs from the repository root, so every package imports as is."""
    for path in (ROOT / "bench").rglob("*.py"):
        assert "sys.path" not in path.read_text(), f"{path} edits sys.path"


def test_process_tables_are_read_through_psutil():
    """Process trees, states and command lines come from psutil (deploy/stack/processes.py),
    not from /proc parsed by hand in each place that needs them."""
    for path in _python_files("app", "tasks", "deploy", "tests", "bench"):
        if path == Path(__file__):
            continue
        assert 'f"/proc/' not in path.read_text() and 'Path("/proc")' not in path.read_text(), (
            f"{path} parses /proc: use psutil (see deploy/stack/processes.py)"
        )


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


JOB_API_IMPORTERS = {"app/services.py"}


def test_the_web_app_reads_its_environment_in_its_settings_module():
    """Like the worker: app/ and tasks/ read variables through ``app.settings`` only (the
    devserver, a launcher, passes its environment on to the processes it starts)."""
    allowed = {ROOT / "app" / "settings.py", ROOT / "app" / "devserver.py"}
    for path in _python_files("app", "tasks"):
        if path not in allowed:
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, (
                f"{path}: read the environment in app/settings.py"
            )


def test_rules_are_registered_in_one_kind_of_registry():
    """Preflight checks and diagnosis rules both register through ``deploy.findings``;
    the pages word the diagnosis rules and keep no rules of their own."""
    for path in _python_files("app", "tasks", "deploy"):
        if path == ROOT / "deploy" / "findings.py":
            continue
        text = path.read_text()
        assert "class Rule" not in text and "class Finding" not in text, path
        assert "RULES: list" not in text, f"{path}: use deploy.findings.Rules"
    assert "deploy.runpod" in (ROOT / "app" / "endpoints" / "diagnosis.py").read_text()


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports_of(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, resolved to a module of the repository where the name
    is one (``from app.lifecycle import jobs`` is ``app.lifecycle.jobs``), each with whether
    the import sits inside a function (the way a cycle hides)."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if _is_module(full) else base, in_function))
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


def _app_graph() -> dict[str, set[str]]:
    """app's modules and the app modules each imports (at any level, in functions too)."""
    graph = {}
    for path in (ROOT / "app").rglob("*.py"):
        if "migrations" not in path.parts:
            imported = {name for name, _ in _imports_of(path) if name.split(".")[0] == "app"}
            graph[_module_of(path)] = {name for name in imported if _is_module(name)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_layout_checker_finds_a_cycle_hidden_in_a_function():
    """The checks below are only as good as the graph: an import inside a function counts."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    imports = _imports_of(ROOT / "app" / "commands.py")
    assert ("app.lifecycle.jobs", False) in imports


def test_the_job_lifecycle_imports_in_one_direction():
    """app.lifecycle's modules import each other bottom first, with no cycle, counting
    imports inside functions (issue 17: the lifecycle was a knot hidden that way)."""
    graph = _app_graph()
    lifecycle = {
        module: {name for name in imported if name.startswith("app.lifecycle.")}
        for module, imported in graph.items()
        if module.startswith("app.lifecycle")
    }
    assert len(lifecycle) > 5, "the lifecycle package was not found"
    assert _cycle(lifecycle) is None, f"import cycle in app.lifecycle: {_cycle(lifecycle)}"


def test_the_app_has_no_import_cycle():
    """No cycle among app's modules either (a package's __init__ aside: importing a
    submodule runs it, but it names no dependency of the submodule)."""
    graph = _app_graph()
    assert _cycle(graph) is None, f"import cycle in app: {_cycle(graph)}"


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_lifecycle_and_the_endpoints_never_reach_the_web():
    """Layers: app.endpoints below app.lifecycle below app.web. Neither lower layer imports
    app.web, even through another module, and app.endpoints imports no lifecycle module."""
    graph = _app_graph()
    for module in graph:
        reached = _reached(graph, module)
        if module.startswith(("app.lifecycle", "app.endpoints")):
            web = sorted(name for name in reached if name.startswith("app.web"))
            assert not web, f"{module} reaches the web side: {web}"
        if module.startswith("app.endpoints"):
            lifecycle = sorted(
                name
                for name in reached
                if name.startswith("app.lifecycle.") and name != LEAF_BUDGET
            )
            assert not lifecycle, f"{module} reaches the lifecycle: {lifecycle}"
    # Settings and Services hold the /status budget, so everything reaches it: it stays a
    # leaf that imports no app module, and so brings no lifecycle with it.
    assert not graph[LEAF_BUDGET], graph[LEAF_BUDGET]


LEAF_BUDGET = "app.lifecycle.status_budget"


# Function-level imports of app modules, each with why it cannot sit at the top.
FUNCTION_LEVEL_IMPORTS: dict[str, str] = {}


def test_no_function_level_import_of_an_app_module():
    """An import inside a function hides a dependency (and, in issue 17, a cycle): app
    modules import each other at the top, unless listed above with a reason."""
    found = set()
    for path in (ROOT / "app").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for name, in_function in _imports_of(path):
            if in_function and name.split(".")[0] == "app":
                found.add(f"{_module_of(path)} -> {name}")
    assert found <= set(FUNCTION_LEVEL_IMPORTS), sorted(found - set(FUNCTION_LEVEL_IMPORTS))

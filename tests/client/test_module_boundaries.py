"""The boundaries between the modules of the ``jobbroker`` package (client, worker SDK, CLI):
imports go one way, and no module reaches into another object's private attributes.

Read from the source (``ast``), not by importing: what is checked is what the code says.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import jobbroker

PACKAGE = Path(jobbroker.__file__).parent


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _dotted(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    # v1: generated; the package's own __init__ only re-exports, lazily.
    if path.relative_to(PACKAGE).parts[0] != "v1" and path != PACKAGE / "__init__.py"
}

ALLOWED_PRIVATE = {"_exit"}
"""Private names of other objects that may be used: ``os._exit`` (the worker's watchdog must
leave without running any cleanup)."""


def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def package_imports(name: str) -> set[str]:
    """The modules of the package that module ``name`` imports (under TYPE_CHECKING too: an
    import only for type hints is still an arrow between the two)."""
    is_package = MODULES[name].name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree(name)):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
        module = [*base, *(node.module.split(".") if node.module else [])]
        submodules = {".".join([*module, alias.name]) for alias in node.names} & MODULES.keys()
        found.update(submodules)
        # `from . import _output` names a sibling module, not the package's own __init__.
        if len(submodules) < len(node.names) and ".".join(module) in MODULES:
            found.add(".".join(module))
    return found - {name}


def cycles() -> Iterator[list[str]]:
    graph = {name: package_imports(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> Iterator[list[str]]:
        if name in path:
            yield [*path[path.index(name) :], name]
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            yield from visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        yield from visit(name, [])


def test_the_boundary_checks_read_the_package() -> None:
    assert {"worker", "worker._stream", "_transport", "_sync", "cli", "cli.common"} <= set(MODULES)
    assert {"worker._lease", "worker._outcomes"} <= package_imports("worker._stream")
    assert "_transport" in package_imports("worker._stream")


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert list(cycles()) == []


def test_the_package_face_shows_client_worker_and_cli() -> None:
    """The worker SDK and the CLI are subpackages: no ``_worker_*`` or ``_cli_*`` module sits
    beside the client's."""
    flat = sorted(name for name in MODULES if "." not in name)
    assert [name for name in flat if name.startswith(("_worker", "_cli", "cli_"))] == []
    assert {"cli", "worker", "client", "connection", "logs"} <= set(flat)
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages == {"cli", "worker", "testing", "v1"}


def test_the_public_names_stay_where_users_import_them() -> None:
    import jobbroker
    import jobbroker.cli
    import jobbroker.worker

    for name in ("Client", "AsyncClient", "Worker", "JobContext", "DoNotRetry", "WorkerStats"):
        assert getattr(jobbroker, name).__name__ == name
    for name in jobbroker.worker.__all__:
        assert hasattr(jobbroker.worker, name)
    assert callable(jobbroker.cli.main)


SIBLINGS = {
    "jobbroker_broker": Path(jobbroker.__file__).parents[3] / "broker" / "jobbroker_broker",
    "jobbroker_worker": Path(jobbroker.__file__).parents[3] / "worker" / "jobbroker_worker",
}


def absolute_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_broker_and_the_worker_service_use_only_public_jobbroker_modules() -> None:
    """``jobbroker_broker`` and ``jobbroker_worker`` are other packages: they import the
    client's public modules (``jobbroker.logs``, ``jobbroker.connection``,
    ``jobbroker.worker.metrics``...), never a private one."""
    found = sorted(
        f"{path.relative_to(root.parent)}: {module}"
        for root in SIBLINGS.values()
        for path in root.rglob("*.py")
        for module in absolute_imports(path)
        if module.startswith("jobbroker.")
        and any(part.startswith("_") for part in module.split(".")[1:])
    )
    assert found == []


def private_reads(name: str) -> Iterator[str]:
    """``x._y`` where ``x`` is not the object's own ``self`` (or ``cls``)."""
    for node in ast.walk(tree(name)):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.startswith("__") or attr in ALLOWED_PRIVATE:
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        yield f"{name}.py:{node.lineno}: {ast.unparse(node)}"


def test_no_module_reads_the_private_attributes_of_other_objects() -> None:
    found = [line for name in MODULES for line in private_reads(name)]
    assert found == []


def test_a_handler_sees_no_lease_state() -> None:
    """JobContext is the handler's view: everything it has of the lease is read-only, and the
    state the worker changes (token, renewal, settled...) is not among its members."""
    from jobbroker import JobContext

    public = {name for name in dir(JobContext) if not name.startswith("_")}
    assert public == {
        "attempt",
        "cancelled",
        "data",
        "flush",
        "id",
        "lease_expires_at",
        "log",
        "max_attempts",
        "name",
        "previous_progress",
        "progress",
        "queue",
        "raise_if_cancelled",
        "stop_detail",
        "timeout_at",
        "worker_id",
    }
    for name in ("cancelled", "stop_detail", "lease_expires_at", "timeout_at"):
        assert isinstance(getattr(JobContext, name), property)
        assert getattr(JobContext, name).fset is None
    private = {name for name in JobContext.__slots__ if name.startswith("_")}
    assert private == {"_lease", "_loop", "_loop_thread", "_reports"}


def test_the_client_package_imports_neither_the_broker_nor_the_worker_service() -> None:
    found = sorted(
        f"{name}: {module}"
        for name, path in MODULES.items()
        for module in absolute_imports(path)
        if module.split(".")[0] in SIBLINGS
    )
    assert found == []

"""The direction of imports is the architecture: `orchestrator` -> `workloads`, never back; `workloads` is
plain PyTorch, PyArrow and NumPy; no module imports itself round a cycle."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("workloads", "orchestrator")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The modules `path` imports (all of them, or only those imported when it is itself imported)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_workloads_imports_no_orchestrator_ray_or_mlflow():
    for name, path in modules().items():
        if name.startswith("workloads"):
            wrong = {i for i in imports(path, top_level_only=False) if i.split(".")[0] in ("orchestrator", "ray", "mlflow")}
            assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_no_import_cycle():
    known = modules()
    graph = {name: {i for i in imports(path, top_level_only=True) if i in known and i != name}
             for name, path in known.items()}
    visiting, done = [], set()

    def visit(name):
        if name in done:
            return
        assert name not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(name):] + [name])
        visiting.append(name)
        for other in sorted(graph[name]):
            if not name.startswith(other + "."):  # a package's modules import it to reach their siblings
                visit(other)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)

"""The direction of imports is the architecture: `orchestrator` -> `workloads`, never back; `workloads` is
plain PyTorch, PyArrow and NumPy; each room of `orchestrator/` imports only what the "May import" line of
its package docstring names; no entry point is imported by anything; no module imports itself round a
cycle. Every import counts, at the top of a module or inside a function."""

import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("workloads", "orchestrator")
ENTRY_POINTS = {f"orchestrator.{name}" for name in ("grid", "tune", "publish", "predict", "convert")} | {
    "orchestrator.report.__main__"}
BOTTOM = "orchestrator.errors"  # any room may import it; it imports no room
GUARDED = ("ray", "mlflow")  # third-party packages a room may import only when its docstring names them


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> dict[str, bool]:
    """The modules `path` imports, each with whether an import of it is at the module's top level."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        names = set()
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        for name in names:
            found[name] = found.get(name, False) or id(node) in top
    return found


def room(module: str) -> str:
    """The room of an orchestrator module: its sub-package, or the module itself at the top."""
    parts = module.split(".")
    return ".".join(parts[:2])


def declared() -> dict[str, tuple[set[str], set[str]]]:
    """Each room's "May import" line: (what it may import anywhere, what only inside functions)."""
    rooms = {}
    for init in sorted((REPO / "orchestrator").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        lines = [line for line in doc.splitlines() if line.startswith("May import: ")]
        assert len(lines) == 1, f"{init.relative_to(REPO)}: its docstring says what it may import in one line"
        anywhere, lazily = set(), set()
        listed = lines[0].removeprefix("May import: ")
        for entry in [] if listed == "nothing" else listed.split(", "):
            name, _, where = entry.partition(" ")
            (lazily if where == "(inside functions)" else anywhere).add(name)
        rooms[f"orchestrator.{init.parent.name}"] = (anywhere, lazily)
    return rooms


def test_workloads_imports_no_orchestrator_ray_or_mlflow():
    for name, path in modules().items():
        if name.startswith("workloads"):
            wrong = {i for i in imports(path) if i.split(".")[0] in ("orchestrator", "ray", "mlflow")}
            assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_every_room_imports_only_what_it_declares():
    rooms, known = declared(), modules()
    assert {room(m) for m in known if m.startswith("orchestrator.") and (REPO / Path(*m.split("."))).is_dir()} \
        <= set(rooms), "a sub-package without a docstring that says what it may import"
    for name, path in known.items():
        mine = room(name)
        if mine not in rooms:
            continue  # an entry point, the bottom module or the package's own __init__
        anywhere, lazily = rooms[mine]
        for imported, at_top in imports(path).items():
            top = imported.split(".")[0]
            if imported.startswith("orchestrator."):
                other = room(imported)
                allowed = other in (mine, BOTTOM) or other in anywhere or (other in lazily and not at_top)
                assert allowed, f"{path.relative_to(REPO)} imports {imported}; {mine} may import {sorted(anywhere)}"
            elif top in GUARDED:
                allowed = top in anywhere or (top in lazily and not at_top)
                assert allowed, f"{path.relative_to(REPO)} imports {imported} ({'top level' if at_top else 'lazily'})"


def test_the_declared_rooms_form_no_cycle():
    rooms = declared()
    order, visiting = [], []

    def visit(name):
        if name in order:
            return
        assert name not in visiting, "rooms import each other: " + " -> ".join(visiting + [name])
        visiting.append(name)
        for other in sorted(rooms[name][0] | rooms[name][1]):
            if other in rooms:
                visit(other)
        visiting.pop()
        order.append(name)

    for name in rooms:
        visit(name)


def test_nothing_imports_an_entry_point_and_the_bottom_imports_no_room():
    for name, path in modules().items():
        wrong = {i for i in imports(path) if i in ENTRY_POINTS and i != name}
        assert not wrong, f"{path.relative_to(REPO)} imports the entry point(s) {sorted(wrong)}"
    assert not {i for i in imports(modules()[BOTTOM]) if i.startswith("orchestrator")}


def test_no_import_cycle():
    known = modules()
    graph = {name: {i for i in imports(path) if i in known and i != name} for name, path in known.items()}
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


def test_every_module_imports():
    for name in modules():
        if not name.endswith("__main__"):
            importlib.import_module(name)

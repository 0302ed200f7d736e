"""MLflow's names (the project's params, metrics, tags and artifact names, the grid's tag) are declared
once, in `orchestrator.tracking.schema`, which writes and reads them: nowhere else, tests included, does a
literal name a run's tag, param or metric, spell a search filter, or spell one of the schema's own names."""

import ast
import re
from pathlib import Path

from orchestrator.tracking import schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "orchestrator" / "tracking" / "schema.py"
# The schema's names no other text would spell by chance (a tag "weights" or a metric "gap" would).
OWN_NAMES = ("BEST_VAL_GAP", "BEST_VAL_MAP", "TEACHER_VAL_GAP", "TRAIN_LOSS", "SUMMARY", "HISTORY", "ERROR_TEXT",
             "REPRESENTATIONS", "PREDICTIONS", "REPORT_HTML", "REPORT_MD", "PARETO_JSON", "PARETO_PNG", "BEST_YAML")
SHARED = {"trial_id"}  # Ray Tune names its trials' ids in their results so too
FILTER = re.compile(r"(^|[\s(])(tags|params|metrics)\.[`\w]")
MLFLOW_TAG = re.compile(r"^(fewer_frames\.\S*|mlflow\.([a-z]+[A-Z.]|note)\S*)$")  # "mlflow.db" is a file
RECORDS = ("tags", "params", "metrics")  # what a run's `data` holds by name (a model version: its tags)


def distinct() -> set[str]:
    names = {value for name, value in vars(schema).items() if isinstance(value, str)
             and (name.endswith(("_TAG", "_PREFIX")) or name in OWN_NAMES)}
    return {name for name in names if "_" in name or "." in name or "/" in name} - SHARED


def sources() -> list[Path]:
    files = [p for top in ("orchestrator", "tests", "benchmarks") for p in (REPO / top).rglob("*.py")]
    return [p for p in files if p not in (SCHEMA, Path(__file__))]


def _record(node: ast.expr) -> bool:
    """Whether `node` is a run's tags, params or metrics (`run.data.tags`) or a model version's tags."""
    return isinstance(node, ast.Attribute) and node.attr in RECORDS and (
        node.attr == "tags" or isinstance(node.value, ast.Attribute) and node.value.attr == "data")


def _looked_up(node: ast.AST) -> ast.expr | None:
    """The key of `x.tags[key]`, `x.tags.get(key)` or `key in x.tags` (and of params, metrics)."""
    if isinstance(node, ast.Subscript) and _record(node.value):
        return node.slice
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and _record(node.func.value) and node.args:
        return node.args[0]
    if isinstance(node, ast.Compare) and len(node.comparators) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)) \
            and _record(node.comparators[0]):
        return node.left
    return None


def violations(path: Path) -> list[str]:
    tree, names, found = ast.parse(path.read_text()), distinct(), []
    keys = {id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys}  # another format's
    for node in ast.walk(tree):
        key = _looked_up(node)
        if isinstance(key, (ast.Constant, ast.JoinedStr)):
            found.append(f"line {node.lineno}: a run's {ast.unparse(key)} by a literal")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in keys:
            text = node.value
            if text in names or MLFLOW_TAG.match(text):
                found.append(f"line {node.lineno}: {text!r} spelt out")
            elif FILTER.search(text):
                found.append(f"line {node.lineno}: a search filter spelt out: {text!r}")
    return [f"{path.relative_to(REPO)}: {v}" for v in found]


def test_mlflow_names_are_spelt_in_the_schema_alone():
    found = [v for path in sources() for v in violations(path)]
    assert not found, "\n".join(found)


def test_the_check_sees_each_kind_of_literal():
    caught = violations(Path(__file__).with_name("mlflow_names_sample.txt"))
    assert len(caught) == 6, caught

"""The package's layers point one way: a module imports only from its own layer or the ones
below it.  ``LAYERS`` is the table ``docs/architecture.md`` shows (checked: the doc's diagram
parses to the same layers); every import counts, those inside functions too (a lazy import is
still a dependency)."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

import torch_hetero

PACKAGE = pathlib.Path(torch_hetero.__file__).parent
ROOT = "torch_hetero"
ARCHITECTURE = pathlib.Path(__file__).parent.parent / "docs" / "architecture.md"

# Bottom to top: (layer, the modules and packages in it, relative to torch_hetero; "" is the
# package itself).  A module may import from its own layer and from any layer listed before it.
LAYERS = [
    ("errors", ["errors"]),
    ("profiles", ["device_models"]),
    ("IR", ["symbolic", "ops_protocol", "virtualized", "printer", "dtypes", "ir"]),
    ("lowering", ["decompositions", "batch_norm", "embedding_bag", "lowering", "graph"]),
    ("planning", ["planning"]),
    ("codegen", ["codegen"]),
    ("runtime", ["runtime"]),
    ("calibration", ["calibration"]),
    ("front-end", ["options", "logs", "compiler", "aot_cache", "backend"]),
    ("tools", ["tools", "__main__", ""]),
]


def layer_of(module: str):
    """The index in LAYERS of ``module`` (dotted, relative to torch_hetero), by its longest
    listed prefix; None if no layer lists it."""
    best = None
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member and module.startswith(member + ".")):
                if best is None or len(member) > len(best[1]):
                    best = (rank, member)
    return None if best is None else best[0]


def modules() -> dict:
    """Every module of the package: dotted name relative to torch_hetero → its file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(module: str, source: str, is_package: bool, known) -> set:
    """The torch_hetero modules ``source`` imports (relative to torch_hetero), anywhere in it.
    ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            found |= {name[len(ROOT) + 1:] if name != ROOT else "" for name in names
                      if name == ROOT or name.startswith(ROOT + ".")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                target = ".".join(base)
            elif node.module == ROOT or (node.module or "").startswith(ROOT + "."):
                target = node.module[len(ROOT) + 1:]
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
    return found


def violations(sources: dict, known) -> list:
    """(importer, imported, why) for each import that points up, or names an unlisted module."""
    found = []
    for module, (source, is_package) in sorted(sources.items()):
        own = layer_of(module)
        for imported in sorted(imports_of(module, source, is_package, known)):
            theirs = layer_of(imported)
            if own is None or theirs is None:
                found.append((module, imported, "not in LAYERS"))
            elif theirs > own:
                found.append((module, imported, f"{LAYERS[own][0]} imports {LAYERS[theirs][0]}"))
    return found


def doc_layers(text: str) -> list:
    """The layer diagram at the top of architecture.md, bottom to top, as (layer, its modules,
    {package: the modules its parentheses name}); a module is named as in LAYERS
    ("tools/" is "tools", "torch_hetero/__init__" is "")."""
    diagram = text.split("## Layers", 1)[1].split("```")[1]
    layers = []
    for line in diagram.splitlines():
        label = re.match(r" (\S.*?)\s{2,}(.*)", line)
        if label:
            layers.append([label.group(1), label.group(2)])
        elif line.strip():
            layers[-1][1] += " " + line.strip().lstrip("↓").strip()
    parsed = []
    for name, described in reversed(layers):
        packages = {package: [m for m in re.split(r",\s*", inner) if m.isidentifier()]
                    for package, inner in re.findall(r"(\w+)/ \(([^)]*)\)", described)}
        members = re.sub(r"\([^)]*\)", "", described).split(":")[0]
        members = [m.strip().rstrip("/").removeprefix(ROOT).lstrip("/").replace("__init__", "")
                   for m in members.split(",")]
        parsed.append((name, sorted(members), packages))
    return parsed


def test_the_architecture_doc_shows_the_layers():
    assert [(name, members) for name, members, _ in doc_layers(ARCHITECTURE.read_text())] == [
        (name, sorted(members)) for name, members in LAYERS]


def test_the_architecture_doc_lists_each_package_whole():
    found = modules()
    for _, _, packages in doc_layers(ARCHITECTURE.read_text()):
        for package, listed in packages.items():
            assert sorted(listed) == sorted(m.split(".", 1)[1] for m in found if m.startswith(package + ".")), package


def test_the_doc_check_sees_a_layer_change():
    text = ARCHITECTURE.read_text()
    for edited in (text.replace(", logs", ""), text.replace(" IR ", " ir "), text.replace("planning/ (", "planning/ (plan, ")):
        assert doc_layers(edited) != doc_layers(text)


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_imports_point_down():
    found = modules()
    sources = {m: (p.read_text(), p.name == "__init__.py") for m, p in found.items()}
    assert violations(sources, set(found)) == []


@pytest.mark.parametrize("module, source, imported", [
    # a profile module reaching a pass, at module level and inside a function
    ("device_models.fake", "from ..planning import fusion\n", "planning.fusion"),
    ("device_models.fake", "def f():\n    from ..codegen.cpp import render_kernel\n", "codegen.cpp"),
    # lowering into codegen or runtime, relative and absolute
    ("lowering.fake", "from ..codegen import cpp_ops\n", "codegen.cpp_ops"),
    ("lowering.fake", "import torch_hetero.runtime.cpp_build\n", "runtime.cpp_build"),
    ("graph", "from torch_hetero.planning.scheduler import Kernel\n", "planning.scheduler"),
    # the package's __init__ resolves "." to itself
    ("device_models", "from .. import compiler\n", "compiler"),
    ("runtime.fake", "from ..calibration import calibrate\n", "calibration.calibrate"),
])
def test_the_check_finds_an_upward_import(module, source, imported):
    known = set(modules()) | {module}
    found = violations({module: (source, module == "device_models")}, known)
    assert [(m, i) for m, i, _ in found] == [(module, imported)]


def test_the_check_allows_imports_down_and_across():
    known = set(modules())
    sources = {"planning.fake": ("from ..device_models import special_functions\nfrom .. import ir\n"
                                 "from .fusion import group_nodes\nimport torch\n", False),
               "codegen.fake": ("def f():\n    from ..planning.loop_nest import Group\n", False)}
    assert violations(sources, known | set(sources)) == []


def test_an_unlisted_module_is_reported():
    assert violations({"newthing": ("from . import ir\n", False)}, set(modules())) == [
        ("newthing", "ir", "not in LAYERS")]

"""The shape of the code: no import cycles, thin entry points, short functions; files written with normal
permissions; publishing a read-only run folder."""

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_tiny_data, tiny_args, writable_copy
from tests.hub_server import FakeHub

PACKAGES = ("trainer", "model_card")
ENTRY_POINTS = {f"trainer.{name}" for name in ("train", "evaluate", "predict", "card", "push", "push_space", "hpo",
                                               "bench", "launch", "history", "check_data", "compare",
                                               "label_next", "gpu_check", "transformers_js")}  # fmt: skip
TOKEN = "hf_alice_0123456789abcdef"

# The layers of docs/architecture.md, top-level modules only: every module in a package under trainer/ (training,
# evaluation, hub, search, export, ...) is library, and a top-level module listed nowhere fails the test below.
CORE = {"trainer.inference", "trainer.labels", "trainer.palette", "trainer.run_folder", "trainer.metric_catalogue"}
SHARED = {"trainer", "trainer.config", "trainer.data", "trainer.modeling", "trainer.provenance", "trainer.files"}
LIBRARY = {"trainer.measurements", "trainer.calibration", "trainer.data_checks", "trainer.selection",
           "trainer.gpu_steps", "trainer.gpu_models", "trainer.js_browser"}  # fmt: skip
MAY_IMPORT = {  # a layer -> the layers its modules may import
    "entry point": {"library", "shared", "core", "model_card"},
    "library": {"library", "shared", "core", "model_card"},
    "shared": {"shared", "core"},
    "core": set(),  # the Space ships these files as they are, so they import nothing of this repository
    "model_card": {"model_card"},  # and trainer.run_folder, the one place a run's file names are spelled
}
THIN_MODULE_LINES, THIN_FUNCTION_LINES = 150, 50  # TRL's scripts: ~100-140 lines


def modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        out |= {name for name in names if name in known}
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def test_no_import_cycles_between_modules():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def layer(name: str) -> str:
    """The documented layer of a module of the two packages ("unplaced" for a new top-level module)."""
    if name.startswith("model_card"):
        return "model_card"
    for place, members in (("entry point", ENTRY_POINTS), ("core", CORE), ("shared", SHARED), ("library", LIBRARY)):
        if name in members:
            return place
    return "library" if ROOT.joinpath(*name.split(".")[:2]).is_dir() else "unplaced"


def test_every_module_has_a_layer_and_the_entry_points_are_the_scripts():
    assert {name: path for name, path in modules().items() if layer(name) == "unplaced"} == {}
    scripts = {name for name, path in modules().items() if "if __name__ == " in path.read_text()}
    assert scripts == ENTRY_POINTS


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, deps in sorted(graph().items()):
        allowed = MAY_IMPORT[layer(name)]
        for dep in sorted(deps):
            if layer(dep) not in allowed and not (layer(name) == "model_card" and dep == "trainer.run_folder"):
                wrong.append(f"{name} ({layer(name)}) imports {dep} ({layer(dep)})")
    assert wrong == []


def test_entry_points_stay_thin():
    # argparse and a main() of a few steps; the logic they call lives in the library
    thick = []
    for name in sorted(ENTRY_POINTS):
        text = modules()[name].read_text()
        tree = ast.parse(text)
        if len(text.splitlines()) > THIN_MODULE_LINES:
            thick.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                thick.append(f"{name}: class {node.name}")
            elif isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= THIN_FUNCTION_LINES:
                thick.append(f"{name}: {node.name}() has {node.end_lineno - node.lineno + 1} lines")
        if ast.unparse(tree.body[-1]) != "if __name__ == '__main__':\n    sys.exit(main())":
            thick.append(f"{name}: does not end in `sys.exit(main())` under __main__")
    assert thick == []


def sources() -> list[Path]:
    """Every module of the two packages and of the Space."""
    return [*modules().values(), *sorted((ROOT / "space").glob("*.py"))]


def test_no_function_over_sixty_lines_outside_tests():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_no_module_level_block_over_sixty_lines_outside_tests():
    # A block at module level (a `with gr.Blocks()`, a loop, an `if`) escapes the function rule above.
    long = []
    for path in sources():
        for node in ast.parse(path.read_text()).body:
            block = not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if block and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_every_module_the_space_imports_from_this_repository_is_uploaded():
    from trainer.hub.space_repo import SPACE_DIR, SPACE_FILES

    siblings = {path.stem for path in SPACE_DIR.glob("*.py")}
    found, todo = set(), ["app"]
    while todo:  # app.py, then every sibling module it imports, and theirs
        module = todo.pop()
        found.add(module)
        todo += sorted({name.split(".")[0] for name in imports(SPACE_DIR / f"{module}.py", siblings)} - found)
    assert {"app", "backend", "inference", "palette", "run_folder"} <= found
    assert {f"{name}.py" for name in found} - set(SPACE_FILES) == set()


def test_run_folder_and_card_honour_the_umask(tiny_model_dir, tmp_path):
    from trainer.card import main as card_main
    from trainer.config import load_config
    from trainer.training.loop import train

    previous = os.umask(0o022)
    try:
        data = make_tiny_data(tmp_path)
        args = tiny_args(tiny_model_dir, data, tmp_path / "run", "--n_bootstrap", "5", "--ema_decay", "0.9")
        run, _ = train(load_config(args))
        assert card_main(["--run_dir", str(run)]) == 0
    finally:
        os.umask(previous)
    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert {"model.safetensors", "metrics.json", "README.md", "plots/confusion_matrix.png",
            "checkpoints/checkpoint-6/ema.safetensors"} <= set(modes)  # fmt: skip
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o644} == {}


def push_with(patch: str, run: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, FakeHub]:
    """`trainer.push` of `run` to a local Hub as alice, in a process where `patch` (Python) ran first."""
    script = (
        f"import errno, pathlib, sys\n{patch}\nfrom trainer.push import main\n"
        f"sys.exit(main(['--run_dir', {str(run)!r}, '--hub_model_id', 'alice/ro', '--retry_wait', '0']))\n"
    )
    with FakeHub(tokens={TOKEN: "alice"}) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN,
                   HF_HOME=str(tmp_path / "hf"))  # fmt: skip
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    return done, hub


@pytest.mark.slow  # a push process, ~5.5 s
def test_push_of_a_read_only_run_folder_publishes_and_says_the_card_was_not_kept(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints")
    # Root writes anywhere, so the read-only folder is the card write failing as it would there (EROFS).
    done, hub = push_with(
        "import trainer.hub.model_repo as push\n"
        "def refuse(path, text):\n"
        "    raise OSError(errno.EROFS, 'Read-only file system', str(path))\n"
        "push.write_text = refuse",
        run, tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the card was pushed but not saved" in done.stderr and "Read-only file system" in done.stderr
    pushed = hub.repo("alice/ro").files("main")
    assert "alice/ro" in pushed["README.md"].decode()
    assert json.loads(pushed["metrics.json"]) == json.loads((run / "metrics.json").read_text())
    assert not (run / "README.md").exists()


@pytest.mark.slow  # a push process, ~5.5 s
def test_push_ends_in_one_line_when_the_run_folder_cannot_be_read(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "checkpoints")
    done, hub = push_with(
        "def refuse(self):\n"
        "    raise PermissionError(errno.EACCES, 'Permission denied', str(self))\n"
        "pathlib.Path.read_bytes = refuse",
        run, tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: cannot access ")
    assert "Permission denied" in done.stderr and "Traceback" not in done.stderr
    repo = hub.repo("alice/ro")
    assert repo is None or "model.safetensors" not in (repo.files("main") or {})  # nothing was committed
    assert not (run / "README.md").exists()  # nothing was pushed, so no card is kept

"""The shape of the code: no import cycles, thin entry points, short functions; files written with normal
permissions; publishing a read-only run folder."""

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, make_tiny_data, tiny_args
from tests.hub_server import FakeHub

PACKAGES = ("trainer", "model_card")
ENTRY_POINTS = {f"trainer.{name}" for name in ("train", "evaluate", "predict", "card", "push", "push_space", "hpo",
                                               "bench", "launch", "history")}  # fmt: skip
TOKEN = "hf_alice_0123456789abcdef"


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


def test_model_card_imports_nothing_of_trainer_and_libraries_import_no_entry_point():
    edges = graph()
    # but the run folder's layout, the one place its file names are spelled
    assert {name: deps for name, deps in edges.items() if name.startswith("model_card") and
            any(d.startswith("trainer") and d != "trainer.run_folder" for d in deps)} == {}  # fmt: skip
    library = {name: deps & ENTRY_POINTS for name, deps in edges.items() if name not in ENTRY_POINTS}
    assert {name: deps for name, deps in library.items() if deps} == {}


def test_the_inference_core_and_the_palette_import_nothing_of_the_repository():
    # the Space ships both files as they are
    assert graph()["trainer.inference"] == set() and graph()["trainer.palette"] == set()


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


def test_push_of_a_read_only_run_folder_publishes_and_says_the_card_was_not_kept(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
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


def test_push_ends_in_one_line_when_the_run_folder_cannot_be_read(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
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

"""The Gradio app in `space/` as a Hugging Face Space that serves a pushed model.

The Space gets app.py, backend.py, requirements.txt, the inference core (`trainer/inference.py`, which
`space/inference.py` links to), the class colours (`trainer/palette.py`) and the run-folder layout with the model
resolver (`trainer/run_folder.py`), both linked likewise, and README.md with its `models:` front matter set to the
model, in one commit.
"""

from __future__ import annotations

from pathlib import Path

from trainer import UserError
from trainer.hub.model_repo import hub_token, publish, resolve_repo_id, with_retries
from trainer.run_folder import is_hub_id

SPACE_DIR = Path(__file__).resolve().parents[2] / "space"
SPACE_FILES = (
    "app.py",
    "backend.py",
    "batching.py",
    "serving.py",
    "inference.py",
    "palette.py",
    "run_folder.py",
    "requirements.txt",
)


def space_files(model_id: str, space_dir: Path = SPACE_DIR) -> list[tuple[str, Path | bytes]]:
    """The Space's files, with README.md's front matter naming `model_id` under `models:`."""
    from huggingface_hub import SpaceCard

    missing = [name for name in (*SPACE_FILES, "README.md") if not (space_dir / name).is_file()]
    if missing:
        raise UserError(f"{space_dir} is missing {', '.join(missing)}: run from a complete checkout")
    card = SpaceCard.load(space_dir / "README.md")
    card.data.models = [model_id]
    # Contents, not paths: inference.py, palette.py and run_folder.py are links, and the Space must get their files.
    return [(name, (space_dir / name).read_bytes()) for name in SPACE_FILES] + [("README.md", str(card).encode())]


def push_space(space_id: str | None, model_id: str, *, private: bool = False, retries: int = 3,
               retry_wait: float = 2.0) -> str:  # fmt: skip
    """Upload the Space and point its MODEL_ID variable at `model_id`; returns the Space's URL."""
    if not is_hub_id(model_id) or "/" not in model_id:
        raise UserError(f"--model_id {model_id!r} must be a Hub model repo id (owner/name): push the model first "
                        "(make push)")  # fmt: skip
    token = hub_token()
    space_id = resolve_repo_id(space_id, f"{model_id.split('/')[1]}-demo", token, retries, retry_wait)
    result = publish(space_files(model_id), space_id, repo_type="space", space_sdk="gradio", private=private,
                     commit_message=f"Space for {model_id}", token=token, retries=retries,
                     retry_wait=retry_wait)  # fmt: skip
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with_retries(lambda: api.add_space_variable(space_id, "MODEL_ID", model_id), space_id, api.endpoint, retries,
                 retry_wait)  # fmt: skip
    return f"{api.endpoint}/spaces/{result.repo_id}"

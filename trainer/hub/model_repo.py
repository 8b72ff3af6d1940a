"""Publish to the Hugging Face Hub in one commit: token checks, retries, one-line errors.

Only the files `trainer.export.uploads.push_files` lists are uploaded (the run's published files, the ONNX files and
the rendered card); never checkpoints, optimizer state, pickles, wandb folders or anything holding a token. The
upload is a single commit, so an interrupted push leaves the repo at its previous commit, and rerunning the same
command is safe: unchanged files are skipped and an unchanged run makes no commit at all.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from trainer import UserError
from trainer.export.uploads import push_files, run_files
from trainer.files import write_text
from trainer.run_folder import CARD, read_metrics

logger = logging.getLogger(__name__)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")


@dataclass
class PushResult:
    repo_id: str
    url: str  # commit or pull-request URL
    files: int
    changed: bool


def known_secrets(token: str | None) -> list[str]:
    values = [token] + [os.environ.get(name) for name in SECRET_ENV]
    return sorted({value for value in values if value and len(value) >= 8})


def check_no_secrets(files: list[tuple[str, Path | bytes]], secrets: list[str]) -> None:
    """Refuse to upload a file that contains a token (by value): the check that the allow list cannot make."""
    for name, source in files:
        data = source if isinstance(source, bytes) else source.read_bytes()
        if any(secret.encode() in data for secret in secrets):
            raise UserError(f"{name} contains one of your tokens: remove it from the file before pushing")


def hub_token(token: str | None = None) -> str:
    """The given token, else the logged-in one (HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise UserError("no Hugging Face token: run `hf auth login` (or set HF_TOKEN) with a token that can write")
    return token


def explain(err: Exception, repo_id: str, endpoint: str) -> str:
    """One line naming what went wrong with a Hub call and what to do about it."""
    from huggingface_hub.errors import BadRequestError, HfHubHTTPError, RepositoryNotFoundError

    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status == 401 and not isinstance(err, RepositoryNotFoundError):
        return "the Hub rejected your token (401): log in again with `hf auth login` or set a valid HF_TOKEN"
    if status == 403:
        return (
            f"your token cannot write to {repo_id} (403): it belongs to another user or organisation, or the token is "
            "read-only; push to your own namespace (--hub_model_id <you>/<name>) or use a write token"
        )
    if isinstance(err, RepositoryNotFoundError):
        return f"repository {repo_id} not found, or your token cannot see it: check --hub_model_id and the token"
    if isinstance(err, BadRequestError) or status == 400:
        detail = (getattr(err, "server_message", None) or str(err)).splitlines()[0]
        return f"the Hub refused the upload to {repo_id} ({detail}): fix the named file and push again"
    if status is not None:
        return (
            f"the Hub answered {status} for {repo_id}: try again later; rerunning the same command is safe "
            "(the upload is one commit, so nothing was half-pushed)"
        )
    if not transient(err):
        return f"unexpected answer from the Hub at {endpoint} ({type(err).__name__}: {err}): rerun, or report it"
    return (
        f"cannot reach the Hub at {endpoint} ({type(err).__name__}): check your network or HF_ENDPOINT, then rerun the "
        "same command (the upload is one commit, so nothing was half-pushed)"
    )


def transient(err: Exception) -> bool:
    """Worth retrying: the network failed or the Hub answered 5xx/429."""
    try:
        import httpx2 as httpx
    except ImportError:  # huggingface_hub < 2 uses httpx
        import httpx
    status = getattr(getattr(err, "response", None), "status_code", None)
    return isinstance(err, httpx.TransportError | ConnectionError) or status == 429 or (status or 0) >= 500


def with_retries(call, repo_id: str, endpoint: str, retries: int, wait: float):
    """`call()`, retried with exponential backoff on transient failures; any failure becomes a one-line UserError."""
    for attempt in range(retries + 1):
        try:
            return call()
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - every Hub failure is reported as one line
            if not transient(err) or attempt == retries:
                raise UserError(explain(err, repo_id, endpoint)) from None
            delay = wait * 2**attempt
            logger.warning("Hub call failed (%s); retry %d of %d in %.0fs", type(err).__name__, attempt + 1, retries,
                           delay)  # fmt: skip
            time.sleep(delay)


def resolve_repo_id(repo_id: str | None, default_name: str, token: str | None = None, retries: int = 3,
                    retry_wait: float = 2.0) -> str:  # fmt: skip
    """The given repo id, checked; or "<token's user>/<default_name>"."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id is None:
        api = HfApi(token=hub_token(token))
        repo_id = f"{with_retries(api.whoami, 'the Hub', api.endpoint, retries, retry_wait)['name']}/{default_name}"
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("expected owner/name")
    except HFValidationError as err:
        raise UserError(f"bad repo id {repo_id!r} ({str(err).splitlines()[0]}): use <user or org>/<name>") from None
    return repo_id


def publish(files: list[tuple[str, Path | bytes]], repo_id: str, *, repo_type: str = "model", private: bool = False,
            revision: str | None = None, create_pr: bool = False, commit_message: str, space_sdk: str | None = None,
            token: str | None = None, retries: int = 3, retry_wait: float = 2.0) -> PushResult:  # fmt: skip
    """Upload `files` to a Hub repo in one commit, creating the repo (and branch) when needed.

    Args:
        files: (path in repo, local path or bytes) pairs.
        repo_id: "owner/name", as returned by `resolve_repo_id`.
    Returns:
        A PushResult; `changed` is False when the repo already held exactly these files.
    """
    import warnings

    from huggingface_hub import CommitOperationAdd, HfApi

    warnings.filterwarnings("ignore", message=".*data file.*model repository")  # embeddings.parquet is meant to go
    token = hub_token(token)
    api = HfApi(token=token)
    check_no_secrets(files, known_secrets(token))

    def retry(call):
        return with_retries(call, repo_id, api.endpoint, retries, retry_wait)

    retry(lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk))
    if revision and revision != "main":
        retry(lambda: api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True))
    head = retry(lambda: api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=source) for name, source in files]
    commit = retry(
        lambda: api.create_commit(
            repo_id,
            operations,
            repo_type=repo_type,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message,
        )  # fmt: skip
    )
    return PushResult(repo_id, commit.pr_url or commit.commit_url, len(files), changed=create_pr or commit.oid != head)


def push_run(run_dir: str | Path, repo_id: str | None = None, *, private: bool = False, revision: str | None = None,
             create_pr: bool = False, commit_message: str | None = None, token: str | None = None,
             retries: int = 3, retry_wait: float = 2.0, onnx: bool = True) -> PushResult:  # fmt: skip
    """Render the run's card for `repo_id`, upload it with the run's files (and, with `onnx`, the ONNX files for ONNX
    Runtime and transformers.js) in one commit, then keep the pushed card as the run's README.md."""
    run = Path(run_dir).resolve()
    run_files(run)  # complete before anything is written or sent
    token = hub_token(token)  # checked before the card is rendered
    repo_id = resolve_repo_id(repo_id, run.name, token, retries, retry_wait)
    uploads = push_files(run, repo_id, onnx=onnx)  # the list `push --dry_run` shows
    card = dict(uploads)[CARD].decode()
    metrics = read_metrics(run)
    accuracy = metrics.get("accuracy", float("nan"))
    message = commit_message or f"Upload {run.name}: accuracy {accuracy:.2%} on {metrics.get('data')}"
    result = publish(uploads, repo_id, private=private, revision=revision, create_pr=create_pr,
                     commit_message=message, token=token, retries=retries, retry_wait=retry_wait)  # fmt: skip
    keep_card(run, card)
    return result


def describe(files: list[tuple[str, Path | bytes | None]]) -> str:
    """One line per file with its size; None: a file made at push time (the ONNX export), size not known yet."""

    def size(source) -> int:
        return 0 if source is None else len(source) if isinstance(source, bytes) else source.stat().st_size

    shown = [f"{'at push':>12}" if source is None else f"{size(source) / 1e6:9.2f} MB" for _, source in files]
    lines = [f"  {size_text}  {name}" for size_text, (name, _) in zip(shown, files)]
    total = sum(size(source) for _, source in files)
    return "\n".join(lines + [f"  {total / 1e6:9.2f} MB  total, {len(files)} files"])


def keep_card(run: Path, card: str) -> None:
    """The pushed card, also as the run's README.md; a read-only run folder is pushed all the same."""
    try:
        write_text(run / CARD, card)
    except OSError as err:
        logger.warning("the card was pushed but not saved in %s (%s)", run, err.strerror)

"""A small Hugging Face Hub-compatible HTTP server for offline tests.

It speaks the part of the Hub API that `huggingface_hub` uses to publish and download a repo: whoami, repo
create/info, branches, preupload (every file "regular", so it travels base64 in the commit), ndjson commits (one
atomic commit per call, pull requests as `refs/pr/N`), tree listing, file resolve (HEAD and GET), Space variables, and
YAML validation of README front matter with the model-index parsed the way the Hub parses it. `fail` injects errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    sdk: str | None = None
    commits: dict[str, dict] = field(default_factory=dict)  # sha -> {"files", "parent", "summary"}
    refs: dict[str, str] = field(default_factory=dict)  # branch or refs/pr/N -> sha
    variables: dict[str, str] = field(default_factory=dict)

    def files(self, revision: str) -> dict[str, bytes] | None:
        sha = self.refs.get(revision, revision if revision in self.commits else None)
        return None if sha is None else self.commits[sha]["files"]

    def commit(self, branch: str, files: dict[str, bytes], summary: str) -> str:
        parent = self.refs.get(branch)
        sha = hashlib.sha1(f"{parent}{summary}{len(self.commits)}".encode()).hexdigest()
        self.commits[sha] = {"files": files, "parent": parent, "summary": summary}
        self.refs[branch] = sha
        return sha


class FakeHub:
    """Run with `with FakeHub(tokens={"hf_x": "alice"}) as hub:`; point HF_ENDPOINT at `hub.url`."""

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None):
        self.tokens = tokens or {}
        self.orgs = orgs or {}  # user -> organisations they can write to
        self.repos: dict[tuple[str, str], Repo] = {}
        self.fail: dict[str, tuple[int, int]] = {}  # endpoint name -> (status, times; -1 forever)
        self.delay: dict[str, float] = {}  # endpoint name -> seconds to wait before answering
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def add_repo(self, repo_id: str, repo_type: str = "model", private: bool = False, sdk: str | None = None) -> Repo:
        repo = Repo(repo_id, repo_type, private, sdk)
        repo.commit(
            "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit"
        )
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def injected(self, name: str) -> int | None:
        with self.lock:
            status, times = self.fail.get(name, (None, 0))
            if status is None or times == 0:
                return None
            self.fail[name] = (status, times - 1)
            return status


def validate_card(content: str) -> str | None:
    """None when README front matter is valid YAML with a parseable model-index, else the reason (as the Hub does)."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    if not content.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(content.split("---", 2)[1]) or {}
    except yaml.YAMLError as err:
        return f"Invalid YAML in README.md metadata: {err}"
    if not isinstance(meta, dict):
        return "README.md metadata must be a mapping"
    if "model-index" in meta:
        try:
            model_index_to_eval_results(meta["model-index"])
        except (KeyError, TypeError, AttributeError) as err:
            return f'"model-index" is invalid: {err!r}'
    for key in ("tags", "datasets", "metrics"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            return f'"{key}" must be a list of strings'
    return None


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        # --- plumbing
        def user(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return hub.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

        def body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def error(self, status: int, message: str, code: str | None = None) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self.send(status, {"error": message}, headers)

        def readable(self, repo: Repo | None) -> bool:
            return repo is not None and (not repo.private or self.can_write(repo.repo_id))

        def can_write(self, repo_id: str) -> bool:
            user = self.user()
            owner = repo_id.split("/")[0]
            return user is not None and (owner == user or owner in hub.orgs.get(user, []))

        def dispatch(self) -> None:
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            query = parse_qs(url.query)
            hub.requests.append((self.command, url.path))
            name = self.endpoint_name(parts)
            time.sleep(hub.delay.get(name, 0))
            status = hub.injected(name) or hub.injected("*")
            if status:
                self.body()
                return self.error(status, f"injected failure on {name}")
            with hub.lock:
                return self.route(parts, query)

        @staticmethod
        def endpoint_name(parts: list[str]) -> str:
            if parts[:1] == ["api"] and len(parts) >= 5 and parts[1] in REPO_TYPES:
                return parts[4]  # preupload, commit, branch, tree, revision, variables
            if parts[:1] == ["api"]:
                return "/".join(parts[1:3])
            return "resolve" if "resolve" in parts else "other"

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = dispatch

        # --- routes
        def route(self, parts: list[str], query: dict) -> None:
            if parts == ["api", "whoami-v2"]:
                user = self.user()
                if user is None:
                    return self.error(401, "Invalid credentials in Authorization header")
                orgs = [{"name": org} for org in hub.orgs.get(user, [])]
                return self.send(200, {"type": "user", "name": user, "orgs": orgs,
                                       "auth": {"type": "access_token", "accessToken": {"role": "write"}}})  # fmt: skip
            if parts == ["api", "validate-yaml"]:
                problem = validate_card(json.loads(self.body() or b"{}").get("content", ""))
                return self.send(200, {}) if problem is None else self.error(400, problem)
            if parts == ["api", "repos", "create"]:
                return self.create(json.loads(self.body() or b"{}"))
            if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_TYPES:
                return self.repo_api(REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:], query)
            repo_type = {"datasets": "dataset", "spaces": "space"}.get(parts[0], "model")
            if repo_type != "model":
                parts = parts[1:]
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            return self.error(404, f"no route for {self.path}")

        def create(self, payload: dict) -> None:
            if self.user() is None:
                return self.error(401, "Invalid credentials in Authorization header")
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or self.user()}/{payload['name']}"
            url = f"{hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
            if hub.repo(repo_id, repo_type):  # the Hub's 409 names the existing repo's URL
                return self.send(409, {"error": "You already created this repo", "url": url},
                                 {"X-Error-Message": "You already created this repo"})  # fmt: skip
            if not self.can_write(repo_id):
                return self.error(403, f"You don't have the rights to create a {repo_type} under this namespace")
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            hub.add_repo(repo_id, repo_type, private, payload.get("sdk"))
            return self.send(200, {"url": url, "name": repo_id})

        def repo_api(self, repo_type: str, repo_id: str, rest: list[str], query: dict) -> None:
            repo = hub.repo(repo_id, repo_type)
            if not self.readable(repo):
                self.body()
                return self.error(404 if self.user() else 401, "Repository not found", "RepoNotFound")
            action = rest[0] if rest else "info"
            if action in ("info", "revision"):
                revision = rest[1] if len(rest) > 1 else "main"
                return self.info(repo, revision)
            if action == "tree":
                return self.tree(repo, rest[1], "/".join(rest[2:]))
            if action == "variables" and self.command == "GET":
                return self.send(200, {k: {"value": v} for k, v in repo.variables.items()})
            if not self.can_write(repo_id):
                self.body()
                return self.error(403, "You don't have the rights to write to this repo")
            if action == "branch":
                body = json.loads(self.body() or b"{}")
                if rest[1] in repo.refs:
                    return self.error(409, "Branch already exists")
                start = repo.refs.get(body.get("startingPoint") or "main")
                repo.refs[rest[1]] = start
                return self.send(200, {})
            if action == "preupload":
                return self.preupload(repo, rest[1], json.loads(self.body()))
            if action == "commit":
                return self.commit(repo, rest[1], self.body(), query)
            if action == "variables":
                body = json.loads(self.body() or b"{}")
                repo.variables[body["key"]] = body["value"]
                return self.send(200, {k: {"value": v} for k, v in repo.variables.items()})
            return self.error(404, f"no route for {self.path}")

        def info(self, repo: Repo, revision: str) -> None:
            files = repo.files(revision)
            if files is None:
                return self.error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            sha = repo.refs.get(revision, revision)
            siblings = [{"rfilename": path} for path in sorted(files)]
            payload = {"id": repo.repo_id, "sha": sha, "private": repo.private, "siblings": siblings,
                       "lastModified": "2026-11-23T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0}  # fmt: skip
            if repo.repo_type == "space":
                payload["sdk"] = repo.sdk
                payload["runtime"] = {"stage": "BUILDING", "hardware": {"current": None, "requested": "cpu-basic"}}
            return self.send(200, payload)

        def tree(self, repo: Repo, revision: str, folder: str) -> None:
            files = repo.files(revision)
            if files is None:
                return self.error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            prefix = f"{folder}/" if folder else ""
            entries = [{"type": "file", "path": p, "size": len(d), "oid": git_blob_sha(d)}
                       for p, d in sorted(files.items()) if p.startswith(prefix)]  # fmt: skip
            if folder and not entries:
                return self.error(404, f"{folder} does not exist", "EntryNotFound")
            return self.send(200, entries)

        def preupload(self, repo: Repo, revision: str, payload: dict) -> None:
            files = repo.files(revision) or {}
            answer = []
            for item in payload.get("files", []):
                old = files.get(item["path"])
                answer.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                               "oid": git_blob_sha(old) if old is not None else None})  # fmt: skip
            return self.send(200, {"files": answer, "commitOid": repo.refs.get(revision)})

        def commit(self, repo: Repo, revision: str, body: bytes, query: dict) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((item["value"] for item in lines if item["key"] == "header"), None)
            if header is None:
                return self.error(400, "commit payload has no header")
            base = repo.files(revision)
            if base is None:
                return self.error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            if header.get("parentCommit") and header["parentCommit"] != repo.refs.get(revision):
                return self.error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(base)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "lfsFile":
                    return self.error(400, "this test server takes regular uploads only")
            readme = files.get("README.md")
            if readme is not None and (problem := validate_card(readme.decode("utf-8", "replace"))):
                return self.error(400, problem)
            branch = revision
            pr_url = None
            if query.get("create_pr") == ["1"]:
                number = 1 + sum(ref.startswith("refs/pr/") for ref in repo.refs)
                branch = f"refs/pr/{number}"
                repo.refs[branch] = repo.refs[revision]
                pr_url = f"{hub.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/discussions/{number}"
            sha = repo.commit(branch, files, header.get("summary", ""))
            return self.send(200, {"commitUrl": f"{hub.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{sha}",
                                   "commitOid": sha, "pullRequestUrl": pr_url})  # fmt: skip

        def resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
            repo = hub.repo(repo_id, repo_type)
            if not self.readable(repo):
                return self.error(404 if self.user() else 401, "Repository not found", "RepoNotFound")
            files = repo.files(revision)
            if files is None:
                return self.error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            if path not in files:
                return self.error(404, "Entry not found", "EntryNotFound")
            data = files[path]
            headers = {"X-Repo-Commit": repo.refs.get(revision, revision), "ETag": f'"{git_blob_sha(data)}"'}
            return self.send(200, raw=data, headers=headers)

    return Handler

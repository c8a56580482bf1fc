"""A small Hugging Face Hub on 127.0.0.1, for testing ``cnnkit push`` and ``hf://`` loading offline.

It implements the endpoints ``huggingface_hub`` calls to create a repo and upload a folder (repo
creation, README validation, preupload, the Git LFS batch API and object upload, the ndjson commit)
and to download one (revision info, resolve with the Hub's headers). Its rule for what goes to LFS
is the Hub's: a path matching an LFS pattern of the branch's ``.gitattributes`` (a new repo starts
with the Hub's default one), a binary sample, or a large file. Every
request is logged with its Authorization header, and files are kept as bytes so a test can compare
sha256 sums. Writes need ``Authorization: Bearer <token>`` with a token it was given (else 401);
namespaces listed in ``missing`` answer 404.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What the Hub puts in a new model repo (an excerpt): weights formats go to LFS.
DEFAULT_GITATTRIBUTES = b"".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n".encode()
                                 for p in ("*.bin", "*.onnx", "*.pt", "*.pth", "*.safetensors", "*.zip"))


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # oid -> files
    lfs_paths: dict[str, set[str]] = field(default_factory=dict)  # oid -> paths committed as lfsFile


@dataclass
class HubState:
    tokens: set[str]
    missing: set[str] = field(default_factory=set)
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes uploaded through LFS
    log: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.branches[branch]]


def _lfs_patterns(gitattributes: bytes) -> list[str]:
    out = []
    for line in gitattributes.decode().splitlines():
        parts = line.split()
        if parts and "filter=lfs" in parts[1:]:
            out.append(parts[0])
    return out


def _goes_to_lfs(file: dict[str, Any], patterns: list[str]) -> bool:
    """The Hub's rule: a .gitattributes LFS pattern, a binary sample (a NUL byte), or over 10 MB."""
    sample = base64.b64decode(file.get("sample", ""))
    return any(fnmatch.fnmatch(file["path"], p) for p in patterns) or b"\0" in sample or file["size"] > 10_000_000


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # --- plumbing ---------------------------------------------------------------------------
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, obj: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, message: str) -> None:
        self._send(code, {"error": message}, {"X-Error-Message": message})

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.state.tokens

    def _record(self, body: bytes) -> None:
        with self.state.lock:
            self.state.log.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                                   "bytes": len(body)})

    def _route(self) -> None:
        body = self._body() if self.command in ("POST", "PUT") else b""
        self._record(body)
        path = self.path.split("?")[0]
        for method, pattern, handler in _ROUTES:
            m = re.fullmatch(pattern, path)
            if m and method == self.command or (m and method == "GET" and self.command == "HEAD"):
                ns = m.groupdict().get("ns")
                if ns in self.state.missing:
                    return self._error(404, "Repository not found")
                return handler(self, body, **m.groupdict())
        self._error(404, f"no route for {self.command} {path}")

    do_GET = do_POST = do_PUT = do_HEAD = _route

    # --- writes ----------------------------------------------------------------------------
    def create_repo(self, body: bytes) -> None:
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        req = json.loads(body)
        ns = req.get("organization") or "me"
        if ns in self.state.missing:
            return self._error(404, "Namespace not found")
        repo_id = f"{ns}/{req['name']}"
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._error(409, "You already created this model repo")
            repo = Repo(private=bool(req.get("private")))
            repo.commits["0" * 40] = {".gitattributes": DEFAULT_GITATTRIBUTES}
            repo.branches["main"] = "0" * 40
            self.state.repos[repo_id] = repo
        self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})

    def validate_yaml(self, body: bytes) -> None:
        self._send(200, {"errors": [], "warnings": []})

    def _repo(self, ns: str, name: str, write: bool = True) -> Repo | None:
        if write and not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return None
        repo = self.state.repos.get(f"{ns}/{name}")
        if repo is None or (repo.private and not self._authorized()):
            self._error(404, "Repository not found")
            return None
        return repo

    def preupload(self, body: bytes, ns: str, name: str, rev: str) -> None:
        repo = self._repo(ns, name)
        if repo is None:
            return
        req = json.loads(body)
        patterns = _lfs_patterns(self.state.files(f"{ns}/{name}", rev).get(".gitattributes", b""))
        files = [{"path": f["path"], "uploadMode": "lfs" if _goes_to_lfs(f, patterns) else "regular", "shouldIgnore": False}
                 for f in req["files"]]
        self._send(200, {"files": files, "commitOid": repo.branches.get(rev)})

    def lfs_batch(self, body: bytes, ns: str, name: str) -> None:
        if self._repo(ns, name) is None:
            return
        req = json.loads(body)
        host = self.headers["Host"]
        objects = []
        for obj in req["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs:
                entry["actions"] = {"upload": {"href": f"http://{host}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, body: bytes, oid: str) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 mismatch")
        with self.state.lock:
            self.state.lfs[oid] = body
        self._send(200, {})

    def commit(self, body: bytes, ns: str, name: str, rev: str) -> None:
        repo = self._repo(ns, name)
        if repo is None:
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        with self.state.lock:
            files = dict(repo.commits[repo.branches[rev]])
            lfs_paths = set()
            for item in lines:
                value = item["value"]
                if item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in self.state.lfs:
                        return self._error(422, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = self.state.lfs[value["oid"]]
                    lfs_paths.add(value["path"])
            oid = hashlib.sha1(json.dumps(sorted((p, hashlib.sha256(b).hexdigest()) for p, b in files.items())).encode()).hexdigest()
            repo.commits[oid], repo.lfs_paths[oid], repo.branches[rev] = files, lfs_paths, oid
        host = self.headers["Host"]
        self._send(200, {"commitUrl": f"http://{host}/{ns}/{name}/commit/{oid}", "commitOid": oid, "success": True})

    def branch(self, body: bytes, ns: str, name: str, branch: str) -> None:
        repo = self._repo(ns, name)
        if repo is None:
            return
        with self.state.lock:
            if branch in repo.branches:
                return self._error(409, "Reference already exists")
            repo.branches[branch] = repo.branches["main"]
        self._send(200, {})

    # --- reads -----------------------------------------------------------------------------
    def _commit_of(self, repo: Repo, rev: str) -> str | None:
        return repo.branches.get(rev) or (rev if rev in repo.commits else None)

    def revision(self, body: bytes, ns: str, name: str, rev: str) -> None:
        repo = self._repo(ns, name, write=False)
        if repo is None:
            return
        sha = self._commit_of(repo, rev)
        if sha is None:
            return self._error(404, "Revision not found")
        files = repo.commits[sha]
        self._send(200, {"id": f"{ns}/{name}", "modelId": f"{ns}/{name}", "sha": sha, "private": repo.private,
                         "siblings": [{"rfilename": p} for p in sorted(files)]})

    def tree(self, body: bytes, ns: str, name: str, rev: str) -> None:
        repo = self._repo(ns, name, write=False)
        if repo is None:
            return
        sha = self._commit_of(repo, rev)
        if sha is None:
            return self._error(404, "Revision not found")
        entries = []
        for path, data in sorted(repo.commits[sha].items()):
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if path in repo.lfs_paths.get(sha, set()):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        self._send(200, entries)

    def resolve(self, body: bytes, ns: str, name: str, rev: str, file: str) -> None:
        repo = self._repo(ns, name, write=False)
        if repo is None:
            return
        sha = self._commit_of(repo, rev)
        if sha is None or file not in repo.commits[sha]:
            return self._error(404, "Entry not found")
        data = repo.commits[sha][file]
        digest = hashlib.sha256(data).hexdigest() if file in repo.lfs_paths.get(sha, set()) else hashlib.sha1(data).hexdigest()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{digest}"'}
        if file in repo.lfs_paths.get(sha, set()):
            headers.update({"X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data))})
        self._send(200, headers=headers, raw=data)


_NS = r"(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_ROUTES = [
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", rf"/api/models/{_NS}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    ("POST", rf"/{_NS}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    ("POST", rf"/api/models/{_NS}/commit/(?P<rev>[^/]+)", _Handler.commit),
    ("POST", rf"/api/models/{_NS}/branch/(?P<branch>[^/]+)", _Handler.branch),
    ("GET", rf"/api/models/{_NS}/revision/(?P<rev>[^/]+)", _Handler.revision),
    ("GET", rf"/api/models/{_NS}/tree/(?P<rev>[^/]+)", _Handler.tree),
    ("GET", rf"/{_NS}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", _Handler.resolve),
]


class FakeHub:
    """``with FakeHub(tokens={"t"}) as hub:`` -> ``hub.url`` to put in HF_ENDPOINT, ``hub.state``."""

    def __init__(self, tokens: set[str], missing: set[str] = frozenset()) -> None:
        self.state = HubState(set(tokens), set(missing))
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A small client for the ConceptLens HTTP API, so a notebook can drive a shared server.

Standard library only (``urllib.request``, ``json``), plus NumPy for the results and tqdm
for the progress bar; it never imports the web service or the workers.

Example (a server started with ``conceptlens serve``)::

    from conceptlens import Client

    client = Client("http://127.0.0.1:8000")  # a new workspace; client.secret to reuse it
    model = client.wait_model(client.upload_model("digit_cnn.onnx")["id"])
    image = client.upload_images("digit.png")[0]
    analysis = client.analyze(model["id"], [image["id"]], grid="3x3")
    client.wait(analysis["id"])
    arrays = client.interactions(analysis["id"])  # the npz: "v", "interactions", "J", ...
    curve = client.curve(analysis["id"])  # {"J": ..., "F": ..., "orders": ...}
"""

from __future__ import annotations

import io
import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Client", "ClientError"]

#: Statuses after which an analysis or a model no longer changes.
ANALYSIS_ENDED = ("done", "failed", "cancelled")
MODEL_ENDED = ("ready", "failed")


class ClientError(Exception):
    """A refused request (``status``: the HTTP status, ``message``: the API's ``detail``),
    or a job that ended badly (``status`` ``None``: a failed or cancelled analysis, a model
    that failed validation, the server unreachable, a wait that timed out)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message if status is None else f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    """A workspace on a ConceptLens server at ``url`` (e.g. ``http://127.0.0.1:8000``).

    Without ``secret`` a new workspace is created (``POST /api/workspace``); keep
    :attr:`secret` to come back to it. Every request sends ``Authorization: Bearer <secret>``.
    Listings and uploads return the API's JSON objects as dicts.
    """

    def __init__(self, url: str, secret: str | None = None, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/api"):
            self.url = self.url[: -len("/api")]
        self.timeout = timeout
        self.workspace_id: str | None = None
        if secret is None:
            created = self._json("POST", "/workspace", auth=False)
            secret, self.workspace_id = str(created["secret"]), str(created["id"])
        self.secret: str = secret

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- models and images -----------------------------------------------------------

    def upload_model(self, path: str | Path, *, name: str | None = None, **form: Any) -> Any:
        """Upload a model file (``POST /api/models``); ``form``: the other fields of the form
        (``input_size="16x16"``, ``channels=1``, ``mean``, ``std``, ``labels``,
        ``architecture``, ``train_samples``). Lists become comma-separated. The model is then
        validated by a worker: :meth:`wait_model`."""
        fields = {"name": name, **form}
        path = Path(path)
        files = [("file", path.name, path.read_bytes())]
        return self._multipart("/models", _form_text(fields), files)

    def wait_model(
        self, model_id: str, *, timeout: float | None = None, interval: float = 0.5
    ) -> Any:
        """The model once it is ``ready``; :class:`ClientError` if its validation failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            model = self._json("GET", f"/models/{_quote(model_id)}")
            if model["status"] == "ready":
                return model
            if model["status"] == "failed":
                raise ClientError(None, f"model {model_id} failed: {model.get('error')}")
            _sleep_or_give_up(deadline, interval, f"model {model_id} is still {model['status']}")

    def upload_images(self, *paths: str | Path) -> list[Any]:
        """Upload PNG or JPEG files (``POST /api/images``, all or nothing); their records."""
        files = [("files", Path(p).name, Path(p).read_bytes()) for p in paths]
        return list(self._multipart("/images", {}, files)["data"])

    def models(self) -> list[Any]:
        """The workspace's models and the built-in ones."""
        return list(self._json("GET", "/models")["data"])

    def images(self) -> list[Any]:
        """The workspace's images and the built-in samples."""
        return list(self._json("GET", "/images")["data"])

    # -- analyses ----------------------------------------------------------------------

    def analyze(
        self,
        model_id: str,
        image_ids: str | Iterable[str],
        *,
        grid: str = "4x4",
        baseline: str = "zero",
        **params: Any,
    ) -> Any:
        """Queue an analysis (``POST /api/analyses``); ``params``: the other fields of the
        body (``target``, ``output``, ``tau``, ``top_k``, ``mode``, ``sampled``, …).
        The response says ``forward_passes``; follow it with :meth:`wait`."""
        ids = [image_ids] if isinstance(image_ids, str) else list(image_ids)
        body = {"model_id": model_id, "image_ids": ids, "grid": grid, "baseline": baseline}
        return self._json("POST", "/analyses", body={**body, **params})

    def analysis(self, analysis_id: str) -> Any:
        """The analysis as the API shows it: status, progress, items, summary."""
        return self._json("GET", f"/analyses/{_quote(analysis_id)}")

    def analyses(self, **filters: str) -> list[Any]:
        """The workspace's analyses, newest first (filters: ``model_id``, ``dataset_id``,
        ``tag``, ``mode``)."""
        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        return list(self._json("GET", "/analyses" + (f"?{query}" if query else ""))["data"])

    def wait(
        self,
        analysis_id: str,
        progress: bool = True,
        *,
        timeout: float | None = None,
        interval: float = 0.5,
    ) -> Any:
        """Poll the analysis until it is done (returned); a failed or cancelled one raises
        :class:`ClientError` with the server's message. ``progress``: a tqdm bar over the
        forward passes (``progress_done / progress_total``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=0, desc=f"analysis {analysis_id[:8]}", unit="pass")
        try:
            while True:
                found = self.analysis(analysis_id)
                if bar is not None:
                    bar.total = max(int(found["progress_total"]), 1)
                    bar.n = min(int(found["progress_done"]), bar.total)
                    bar.set_postfix_str(found["status"], refresh=False)
                    bar.refresh()
                if found["status"] == "done":
                    return found
                if found["status"] in ("failed", "cancelled"):
                    raise ClientError(None, _why_ended(found))
                _sleep_or_give_up(
                    deadline, interval, f"analysis {analysis_id} is still {found['status']}"
                )
        finally:
            if bar is not None:
                bar.close()

    def interactions(self, analysis_id: str, item: int | str = 0) -> dict[str, np.ndarray]:
        """One image's stored result (``export.npz``) as arrays: ``v``, ``interactions``,
        ``logits``, ``J``, ``F``, … (README "Result files"). ``item``: the image's position
        in the analysis, or its item id."""
        if isinstance(item, int):
            items = self.analysis(analysis_id)["items"]
            if not -len(items) <= item < len(items):
                raise ClientError(None, f"analysis {analysis_id} has {len(items)} images")
            item = str(items[item]["id"])
        path = f"/analyses/{_quote(analysis_id)}/items/{_quote(item)}/export.npz"
        data = self._request("GET", path)
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}

    def curve(self, analysis_id: str) -> dict[str, np.ndarray]:
        """The order-strength curve over the analysis's images: ``J`` (``J^(m)``), ``F``
        (``F^(m)``) and their ``orders`` m, as arrays, from the analysis's summary."""
        summary = self.analysis(analysis_id).get("summary") or {}
        if not summary.get("J"):
            raise ClientError(None, f"no image of analysis {analysis_id} has finished yet")
        j = np.asarray(summary["J"], dtype=float)
        orders = summary.get("orders")
        return {
            "J": j,
            "F": np.asarray(summary["F"], dtype=float),
            "orders": np.asarray(orders if orders is not None else np.arange(len(j))),
        }

    # -- HTTP --------------------------------------------------------------------------

    def _json(
        self, method: str, path: str, *, body: Any = None, auth: bool = True
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        answer = self._request(method, path, data=data, headers=headers, auth=auth)
        parsed: dict[str, Any] = json.loads(answer) if answer else {}
        return parsed

    def _multipart(
        self, path: str, fields: dict[str, str], files: list[tuple[str, str, bytes]]
    ) -> dict[str, Any]:
        boundary = f"conceptlens-{uuid.uuid4().hex}"
        parts: list[bytes] = []
        for key, value in fields.items():
            parts.append(_part_head(boundary, f'form-data; name="{_escape(key)}"'))
            parts.append(value.encode() + b"\r\n")
        for key, filename, content in files:
            disposition = f'form-data; name="{_escape(key)}"; filename="{_escape(filename)}"'
            kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            parts.append(_part_head(boundary, disposition, kind))
            parts.append(content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        answer = self._request("POST", path, data=b"".join(parts), headers=headers)
        parsed: dict[str, Any] = json.loads(answer)
        return parsed

    def _request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> bytes:
        """The body of ``method /api{path}``; a 4xx or 5xx raises :class:`ClientError`."""
        request = urllib.request.Request(
            f"{self.url}/api{path}", data=data, method=method, headers=dict(headers or {})
        )
        request.add_header("Accept", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.secret}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            try:
                answer = error.read()
            except OSError:
                answer = b""
            finally:
                error.close()
            raise ClientError(error.code, _detail(answer, str(error.reason))) from None
        except urllib.error.URLError as error:
            raise ClientError(None, f"cannot reach {self.url}: {error.reason}") from None


def _detail(body: bytes, reason: str) -> str:
    """The API's ``detail`` sentence, else the body as text, else the HTTP reason."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip() or str(reason)
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    return body.decode(errors="replace")


def _why_ended(analysis: dict[str, Any]) -> str:
    """Why an analysis is failed or cancelled: its error, else its first failed image's."""
    name = f"analysis {analysis['id']} {analysis['status']}"
    errors = [analysis.get("error")] + [i.get("error") for i in analysis.get("items", [])]
    message = next((e for e in errors if e), None)
    return f"{name}: {message}" if message else name


def _form_text(fields: dict[str, Any]) -> dict[str, str]:
    """Form fields as text: ``None`` left out, lists comma-separated, numbers as written."""
    out = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        out[key] = str(value)
    return out


def _part_head(boundary: str, disposition: str, kind: str | None = None) -> bytes:
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if kind is not None:
        head += f"Content-Type: {kind}\r\n"
    return (head + "\r\n").encode()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _sleep_or_give_up(deadline: float | None, interval: float, what: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise ClientError(None, f"timed out: {what}")
    time.sleep(interval)

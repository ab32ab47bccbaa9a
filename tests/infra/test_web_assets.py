"""The web chat's socket.io client fetch: pinned integrity checked, files unpacked atomically, no network needed.

The "registry" is a folder served through ``file://`` holding a tarball laid out as npm's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from infra.web_assets import SOCKET_IO_CLIENT, WebAssetError, check_integrity, fetch, socketio_client_file


def registry_with(tmp_path: Path, files: dict[str, bytes]) -> tuple[str, str]:
    """A file:// registry serving socket.io-client's pinned version with ``files``; (registry, integrity)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    folder = tmp_path / "registry" / SOCKET_IO_CLIENT.package / "-"
    folder.mkdir(parents=True)
    (folder / f"{SOCKET_IO_CLIENT.package}-{SOCKET_IO_CLIENT.version}.tgz").write_bytes(data)
    return f"file://{tmp_path / 'registry'}", "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_fetch_checks_and_unpacks(tmp_path: Path) -> None:
    registry, integrity = registry_with(tmp_path, {"dist/socket.io.min.js": b"var io;", "LICENSE": b"MIT",
                                                   "dist/other.js": b"no"})
    spec = replace(SOCKET_IO_CLIENT, integrity=integrity)
    folder = fetch(tmp_path / "var", spec, registry)
    assert folder == socketio_client_file(tmp_path / "var").parent
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "card.json", "socket.io.min.js"]
    assert (folder / "socket.io.min.js").read_bytes() == b"var io;"
    card = json.loads((folder / "card.json").read_text())
    assert card["version"] == SOCKET_IO_CLIENT.version and card["integrity"] == integrity and card["license"] == "MIT"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert fetch(tmp_path / "var", spec, "file:///nowhere") == folder  # there already: no download


def test_other_bytes_than_pinned_install_nothing(tmp_path: Path) -> None:
    registry, _ = registry_with(tmp_path, {"dist/socket.io.min.js": b"evil()", "LICENSE": b"MIT"})
    with pytest.raises(WebAssetError, match="the registry served other bytes; nothing was installed"):
        fetch(tmp_path / "var", SOCKET_IO_CLIENT, registry)
    assert not socketio_client_file(tmp_path / "var").exists()
    with pytest.raises(WebAssetError, match="cannot download"):
        fetch(tmp_path / "var2", SOCKET_IO_CLIENT, f"file://{tmp_path / 'empty'}")


def test_check_integrity_known_answer() -> None:
    check_integrity(b"abc", "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUy"
                            "knw==")
    with pytest.raises(WebAssetError, match="uses 'sha1'; expected a sha512-<base64> value"):
        check_integrity(b"abc", "sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")

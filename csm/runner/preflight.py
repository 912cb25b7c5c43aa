"""What `csm up` checks before it changes anything: the programs and the image are
there, every secret file is readable, every quota holds what its user stores, and no
container, network or port the stack needs belongs to something else.

    preflight.check(stack)   # raises BadInput or HostNotReady saying what to do
"""

from __future__ import annotations

import os
import shutil
import socket

from . import BadInput, HostNotReady, disks, files, nginx, podman


def port_free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def check(stack) -> None:
    """Everything stack.up() needs, checked without changing anything."""
    if stack.tls_port and stack.tls_port == stack.http_port:
        raise BadInput(f"the HTTP and TLS ports are both {stack.http_port}; choose two ports")
    podman.require(stack.host)
    nginx.binary()
    if stack.tls_port and not shutil.which("openssl"):
        raise HostNotReady("openssl is not installed; run scripts/install-deps")
    for name, user in stack.plan.users.items():
        creatable = stack.create_passwords and user.password.hashed
        if not (creatable and not os.path.lexists(user.password.file)):
            files.password_text(user)
        for f in files.extra_env_files(user):
            files.check_readable(f, f"users.{name}.environmentFiles")
        why = disks.refusal(user)
        if why:
            raise BadInput(why)
    if any(u.disk.quotaBytes for u in stack.plan.users.values()):
        for program in ("mkfs.ext4", "resize2fs", "e2fsck", "losetup", "mount"):
            if not shutil.which(program):
                raise HostNotReady(
                    f"{program} is not installed; the users' disks (diskQuota) need it: "
                    "run scripts/install-deps (Debian: apt-get install e2fsprogs mount)"
                )
    image = stack.plan.image
    if not podman.image_exists(stack.host, image):
        raise HostNotReady(f"the image {image} is missing; build it with `make image` (or `csm image build`)")
    _container_names(stack)
    _ports(stack)


def _container_names(stack) -> None:
    for name, user in stack.plan.users.items():
        cname = user.container.name
        info = podman.inspect(stack.host, cname)
        owner = podman.labels(info).get(podman.STACK_LABEL) if info else None
        if info and owner != str(stack.state_dir):
            where = f"the stack with state directory {owner}" if owner else "something other than csm"
            hint = f"`csm down --state-dir {owner}`" if owner else f"`podman rm -f {cname}` if it is not needed"
            raise HostNotReady(
                f"a container named {cname} already exists and belongs to {where}; "
                f"stop it with {hint}, or give users.{name} another name"
            )
        network = user.network.name
        found = podman.inspect_network(stack.host, network)
        owner = podman.network_labels(found).get(podman.STACK_LABEL)
        if found and owner != str(stack.state_dir):
            where = f"the stack with state directory {owner}" if owner else "something other than csm"
            raise HostNotReady(
                f"a podman network named {network} already exists and belongs to {where}; "
                f"remove it (`podman network rm {network}`) if it is not needed, "
                f"or give users.{name} another name"
            )


def _ports(stack) -> None:
    """nginx's ports are free, or its own."""
    nginx_ports = [p for p in (stack.http_port, stack.tls_port) if p]
    rec = stack.recorded(stack.state_dir) if nginx.running_pid(stack.state_dir) else None
    ours_nginx = {rec["http_port"], rec["tls_port"]} if rec else set()
    for port in nginx_ports:
        if port not in ours_nginx and not port_free("0.0.0.0", port):
            flag = "--http-port" if port == stack.http_port else "--tls"
            raise HostNotReady(
                f"port {port}, where nginx is to listen, is already in use by another program; "
                f"stop that program or choose another port ({flag})"
            )

"""Each user's code-server socket as nginx and root reach it: a hard link, in a
directory only root writes, to the socket code-server made in the user's own directory.

The user owns the directory code-server makes its socket in (a bind mount in their
container), so they can put anything at that name, a symbolic link to another user's
socket too. nginx, which may reach every user's socket, must never follow that: it
connects to root's link instead, which root makes only to a socket the user's
container uid owns (lstat, so never through a link), and checks again once made.

    sockets.link(plan.users["ada"])   # after each start; cheap when nothing changed
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from csm.plan_types import User

log = logging.getLogger("csm.sockets")


def link(user: User) -> bool:
    """Point the user's socket (plan users.<n>.socket) at the one code-server made
    (users.<n>.socketSource), if that is a socket of the user's own. True when the
    link is in place; False (and the old link left, or none) otherwise."""
    source, target = Path(user.socketSource), Path(user.socket)
    owner = user.ids.hostUid
    try:
        found = os.lstat(source)
    except FileNotFoundError:
        return False  # code-server has not made it yet
    if not _own_socket(found, owner):
        log.warning(
            "%s is not a socket of %s's container (mode %o, owner %d): not linked",
            source,
            user.name,
            found.st_mode,
            found.st_uid,
        )
        return False
    try:
        if os.lstat(target).st_ino == found.st_ino:
            return True
    except FileNotFoundError:
        pass
    fresh = target.with_name(f".{target.name}.new")
    fresh.unlink(missing_ok=True)
    os.link(source, fresh, follow_symlinks=False)  # a link swapped in meanwhile is linked as a link...
    if not _own_socket(os.lstat(fresh), owner):  # ...and refused here
        fresh.unlink()
        log.warning("%s changed while it was linked: not linked", source)
        return False
    os.replace(fresh, target)
    return True


def _own_socket(st: os.stat_result, owner: int) -> bool:
    return stat.S_ISSOCK(st.st_mode) and st.st_uid == owner

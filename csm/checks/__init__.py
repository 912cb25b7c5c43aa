"""Checks that prove a live deployment works.

Each check is a small function named for what it proves; it returns a short sentence
of what it saw that proves it, or raises `CheckFailed` with what it saw instead.

- `csm.checks.workbench` and `csm.checks.proxy`: from outside, through nginx, given a
  user's address and password, on `csm.checks.http`'s transport (requests,
  websocket-client). `csm smoke URL` runs them against a real server.
- `csm.checks.host` (and `csm.checks.limits`, `csm.checks.network`, `csm.checks.idle`):
  on the host, through a `run(shell_command) -> stdout` callable
  (`machine.succeed` in a NixOS VM test, `csm.checks.commands.subprocess_runner` here).
- `csm.checks.image`: the image contract.
"""


class CheckFailed(AssertionError):
    """A check saw something other than what it proves; the message says what."""

# The NixOS VM tests, the flake's checks: `nix build -L .#checks.x86_64-linux.<name>`.
# They need a Linux machine with Nix, KVM and a binary cache; see docs/nixos-tests.md.
{ pkgs, self }:
{
  # Two users behind nginx over HTTPS; host checks, image contract and `csm smoke`.
  server = pkgs.testers.runNixOSTest (import ./server.nix { inherit pkgs self; });
  # A wildcard certificate for every user's address from a local ACME server, by DNS-01.
  acme-wildcard = pkgs.testers.runNixOSTest (import ./acme-wildcard.nix { inherit pkgs self; });
}

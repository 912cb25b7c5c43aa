# Tier 2: the NixOS module evaluated by real nixpkgs lib.evalModules, with nixpkgs'
# real oci-containers module and the other NixOS options it sets declared by a small
# stub (their real types, no nixpkgs).
#   nix-instantiate --eval --strict --json --read-write-mode tests/tier2/eval-module.nix \
#     --arg nixpkgsLib ../shared/nixpkgs-lib --arg ociContainers ../shared/nixos-modules/oci-containers.nix \
#     --arg settingsFile ./examples/team.nix
#   (optionally --arg hostModule ./host.nix: more of the host's configuration, e.g. its nginx user)
{ nixpkgsLib, ociContainers, settingsFile, hostModule ? { } }:
let
  lib = import (nixpkgsLib + "/lib");
  stub = import ./nixos-options.nix { inherit lib ociContainers; };

  fakePackage = name: { type = "derivation"; inherit name; outPath = "/nix/store/${name}"; meta.mainProgram = name; };
  pkgs = {
    writeText = name: _: "/nix/store/${name}";
    # The build script itself, so a test runs it (with a real csm) as the build would.
    runCommand = name: _env: script: builtins.toFile name script;
    writeTextDir = name: _: "/nix/store/landing-page";
    # The script itself, so the test reads what runs before `podman run` (oci-containers
    # calls it as <path>/bin/<name>); --read-write-mode writes it to the store.
    writeShellApplication = { name, text, ... }: builtins.toFile name text;
    util-linux = fakePackage "util-linux";
    e2fsprogs = fakePackage "e2fsprogs";
  };

  eval = lib.evalModules {
    modules = [
      stub
      ../../modules/code-server-multi
      hostModule
      {
        _module.args.pkgs = pkgs;
        services.code-server-multi = import settingsFile // {
          enable = true;
          package = fakePackage "csm";
          imageStream = fakePackage "image-stream";
        };
      }
    ];
  };
  c = eval.config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
in
{
  assertions = failed;
  containers = lib.mapAttrs (_: x: removeAttrs x [ "imageStream" ] // { hasImageStream = x.imageStream != null; })
    c.virtualisation.oci-containers.containers;
  podman = c.virtualisation.podman.enable;
  inherit (c) warnings;
  services = lib.mapAttrs (_: s: { inherit (s) description preStart postStart script preStop postStop requires after before serviceConfig unitConfig wantedBy path restartTriggers environment; }) c.systemd.services;
  timers = c.systemd.timers;
  tmpfiles = c.systemd.tmpfiles.rules;
  nginx = { inherit (c.services.nginx) enable user appendHttpConfig appendConfig eventsConfig serverNamesHashBucketSize virtualHosts; };
  users = { inherit (c.users) users groups; };
  acme = c.security.acme.certs;
  firewall = c.networking.firewall.allowedTCPPorts;
  etc = c.environment.etc;
  systemPackages = map (p: p.name) c.environment.systemPackages;
  # What admin.nix publishes at planFile for csm.
  inherit (c.services.code-server-multi) plan planFile;
}

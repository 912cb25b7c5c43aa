# Tier 2: the NixOS module evaluated by real nixpkgs lib.evalModules, with the
# NixOS options it sets declared by a small stub (their real types, no nixpkgs).
#   nix-instantiate --eval --strict --json tests/tier2/eval-module.nix \
#     --arg nixpkgsLib /path/to/nixpkgs.lib --arg settingsFile ./examples/team.nix
{ nixpkgsLib, settingsFile }:
let
  lib = import (nixpkgsLib + "/lib");
  inherit (lib) mkOption types;
  any = mkOption { type = types.anything; default = null; };
  opt = type: default: mkOption { inherit type default; };

  stub = {
    options = {
      assertions = opt (types.listOf (types.submodule {
        options.assertion = opt types.bool true;
        options.message = opt types.str "";
      })) [ ];
      virtualisation.podman.enable = opt types.bool false;
      virtualisation.podman.package = opt types.raw { outPath = "/nix/store/podman"; };
      virtualisation.oci-containers.backend = opt (types.enum [ "podman" "docker" ]) "podman";
      virtualisation.oci-containers.containers = opt (types.attrsOf (types.submodule {
        options = {
          image = opt types.str null;
          imageStream = opt (types.nullOr types.raw) null;
          cmd = opt (types.listOf types.str) [ ];
          user = opt (types.nullOr types.str) null;
          environment = opt (types.attrsOf types.str) { };
          environmentFiles = opt (types.listOf types.path) [ ];
          ports = opt (types.listOf types.str) [ ];
          volumes = opt (types.listOf types.str) [ ];
          extraOptions = opt (types.listOf types.str) [ ];
          pull = opt (types.enum [ "always" "missing" "never" "newer" ]) "missing";
          podman.sdnotify = opt (types.enum [ "conmon" "healthy" "container" ]) "conmon";
        };
      })) { };
      systemd.services = opt (types.attrsOf (types.submodule {
        options = {
          description = opt types.str "";
          preStart = opt types.lines "";
          script = opt types.lines "";
          postStop = opt types.lines "";
          requires = opt (types.listOf types.str) [ ];
          after = opt (types.listOf types.str) [ ];
          path = opt (types.listOf types.raw) [ ];
          serviceConfig = opt (types.attrsOf types.anything) { };
        };
      })) { };
      systemd.timers = opt (types.attrsOf types.anything) { };
      systemd.tmpfiles.rules = opt (types.listOf types.str) [ ];
      networking.firewall.allowedTCPPorts = opt (types.listOf types.port) [ ];
      environment.etc = opt (types.attrsOf (types.submodule { options.source = opt types.str null; })) { };
      environment.systemPackages = opt (types.listOf types.raw) [ ];
      security.acme.certs = opt (types.attrsOf (types.submodule {
        options = {
          domain = opt types.str null;
          extraDomainNames = opt (types.listOf types.str) [ ];
          dnsProvider = opt (types.nullOr types.str) null;
          environmentFile = opt (types.nullOr types.path) null;
          group = opt types.str "acme";
          email = opt (types.nullOr types.str) null;
        };
      })) { };
      services.nginx = {
        enable = opt types.bool false;
        group = opt types.str "nginx";
        appendHttpConfig = opt types.lines "";
        virtualHosts = opt (types.attrsOf (types.submodule {
          options = {
            default = opt types.bool false;
            forceSSL = opt types.bool false;
            addSSL = opt types.bool false;
            useACMEHost = opt (types.nullOr types.str) null;
            root = opt (types.nullOr types.path) null;
            extraConfig = opt types.lines "";
            locations = opt (types.attrsOf (types.submodule {
              options = {
                proxyPass = opt (types.nullOr types.str) null;
                recommendedProxySettings = opt types.bool true;
                extraConfig = opt types.lines "";
              };
            })) { };
          };
        })) { };
      };
    };
  };

  fakePackage = name: { type = "derivation"; inherit name; outPath = "/nix/store/${name}"; meta.mainProgram = name; };
  pkgs = {
    writeText = name: _: "/nix/store/${name}";
    writeTextDir = name: _: "/nix/store/landing-page";
  };

  eval = lib.evalModules {
    modules = [
      stub
      ../../modules/code-server-multi
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
  services = lib.mapAttrs (_: s: { inherit (s) preStart script postStop requires after serviceConfig; }) c.systemd.services;
  timers = c.systemd.timers;
  tmpfiles = c.systemd.tmpfiles.rules;
  nginx = { inherit (c.services.nginx) enable appendHttpConfig virtualHosts; };
  acme = c.security.acme.certs;
  firewall = c.networking.firewall.allowedTCPPorts;
  etc = c.environment.etc;
  systemPackages = map (p: p.name) c.environment.systemPackages;
}

# nixpkgs' real virtualisation.oci-containers module, and the other NixOS options it,
# the code-server-multi module and the VM tests' server node set, declared with their
# real types and defaults, so that nixpkgs' lib.evalModules can evaluate a host
# configuration without the rest of nixpkgs' NixOS modules.
{ lib, ociContainers }:
let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
in
{
  imports = [ ociContainers ];

  options = {
    assertions = opt (types.listOf (types.submodule {
      options.assertion = opt types.bool true;
      options.message = opt types.str "";
    })) [ ];
    warnings = opt (types.listOf types.str) [ ];
    # oci-containers puts these in every unit's environment, and sets docker's switch
    # (under mkIf, so it must exist) for the docker backend.
    networking.proxy.envVars = opt types.attrs { };
    virtualisation.docker.enable = opt types.bool false;
    virtualisation.podman.enable = opt types.bool false;
    virtualisation.podman.package = opt types.raw { outPath = "/nix/store/podman"; };
    systemd.services = opt (types.attrsOf (types.submodule {
      options = {
        description = opt types.str "";
        wantedBy = opt (types.listOf types.str) [ ];
        wants = opt (types.listOf types.str) [ ];
        after = opt (types.listOf types.str) [ ];
        before = opt (types.listOf types.str) [ ];
        restartTriggers = opt (types.listOf types.unspecified) [ ];
        preStart = opt types.lines "";
        postStart = opt types.lines "";
        script = opt types.lines "";
        preStop = opt types.lines "";
        postStop = opt types.lines "";
        requires = opt (types.listOf types.str) [ ];
        path = opt (types.listOf types.raw) [ ];
        environment = opt (types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]))) { };
        unitConfig = opt (types.attrsOf types.anything) { };
        serviceConfig = opt (types.attrsOf types.anything) { };
      };
    })) { };
    systemd.timers = opt (types.attrsOf types.anything) { };
    systemd.tmpfiles.rules = opt (types.listOf types.str) [ ];
    networking.firewall.allowedTCPPorts = opt (types.listOf types.port) [ ];
    networking.primaryIPAddress = opt types.str "192.168.1.2";
    networking.primaryIPv6Address = opt types.str "2001:db8:1::2";
    networking.nameservers = opt (types.listOf types.str) [ ];
    # The VM tests' machines (nixos/modules/virtualisation/qemu-vm.nix).
    virtualisation.memorySize = opt types.ints.positive 1024;
    virtualisation.diskSize = opt types.ints.positive 1024;
    virtualisation.cores = opt types.ints.positive 1;
    environment.etc = opt (types.attrsOf (types.submodule {
      options.source = opt (types.nullOr types.str) null;
      options.text = opt (types.nullOr types.lines) null;
      options.mode = opt types.str "symlink";
    })) { };
    environment.systemPackages = opt (types.listOf types.raw) [ ];
    security.acme.certs = opt (types.attrsOf (types.submodule {
      options = {
        domain = opt types.str null;
        extraDomainNames = opt (types.listOf types.str) [ ];
        dnsProvider = opt (types.nullOr types.str) null;
        environmentFile = opt (types.nullOr types.path) null;
        group = opt types.str "acme";
        email = opt (types.nullOr types.str) null;
        dnsPropagationCheck = opt types.bool true;
      };
    })) { };
    # nixos/modules/config/users-groups.nix: what the gate's accounts and nginx's
    # membership in the proxy group use.
    users.users = opt (types.attrsOf (types.submodule {
      options = {
        isSystemUser = opt types.bool false;
        isNormalUser = opt types.bool false;
        uid = opt (types.nullOr types.int) null;
        group = opt types.str "";
        extraGroups = opt (types.listOf types.str) [ ];
        description = opt (types.passwdEntry types.str) "";
      };
    })) { };
    users.groups = opt (types.attrsOf (types.submodule {
      options = {
        gid = opt (types.nullOr types.int) null;
        members = opt (types.listOf (types.passwdEntry types.str)) [ ];
      };
    })) { };
    services.nginx = {
      enable = opt types.bool false;
      user = opt types.str "nginx";
      group = opt types.str "nginx";
      appendHttpConfig = opt types.lines "";
      appendConfig = opt types.lines "";
      eventsConfig = opt types.lines "";
      serverNamesHashBucketSize = opt (types.nullOr types.ints.positive) null;
      virtualHosts = opt (types.attrsOf (types.submodule {
        options = {
          default = opt types.bool false;
          forceSSL = opt types.bool false;
          addSSL = opt types.bool false;
          sslCertificate = opt (types.nullOr types.path) null;
          sslCertificateKey = opt (types.nullOr types.path) null;
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
}

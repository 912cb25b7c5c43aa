# The plan's containers onto virtualisation.oci-containers (podman), each unit ready
# only when code-server answers its health check, each on its own isolated podman
# network (created by a oneshot unit before the container's). A container whose
# code-server dies is restarted by systemd: oci-containers' units have Restart=always.
# code-server listens only on a Unix socket in a host directory mounted into the
# container (the plan's volumes); the plan publishes no port (ports = [ ]), so the
# container has no address on the host that anyone could connect to or take over.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;

  unitName = lib.removeSuffix ".service";
in
lib.mkIf cfg.enable {
  assertions = [{
    assertion = cfg.package != null;
    message = "services.code-server-multi.package (the csm CLI) must be set: each container's unit runs `csm prepare` before it starts; the flake's module sets it.";
  }];

  virtualisation.podman.enable = true;
  virtualisation.oci-containers.backend = "podman";

  virtualisation.oci-containers.containers = lib.mapAttrs' (_: u: lib.nameValuePair u.container.name {
    inherit (u.container) image cmd user environment environmentFiles ports volumes extraOptions;
    imageStream = cfg.imageStream;
    pull = "never";
    podman.sdnotify = "healthy";
  }) plan.users;

  # Before each start, as root: the user's disk (mounted at their directory), the
  # user's directories (the socket directory among
  # them, which podman needs to exist before it mounts it) and the VS Code settings
  # seed (byte for byte, only where missing), by the same code the portable runner
  # uses. The password never reaches the container: the gate checks it.
  systemd.services = lib.mapAttrs' (name: u: lib.nameValuePair (unitName u.container.unit) {
    preStart = lib.mkBefore (lib.optionalString (cfg.package != null)
      "${lib.getExe' cfg.package "csm"} prepare --plan ${lib.escapeShellArg cfg.planFile} ${lib.escapeShellArg name}\n");
    # Once healthy (the unit's ready), the socket code-server made is linked where nginx
    # connects: never the user's own path, which they could point anywhere.
    postStart = lib.optionalString (cfg.package != null)
      "${lib.getExe' cfg.package "csm"} prepare --plan ${lib.escapeShellArg cfg.planFile} --started ${lib.escapeShellArg name}\n";
    # `csm prepare` creates, mounts and resizes the user's disk (csm/runner/disks.py).
    path = [ pkgs.util-linux pkgs.e2fsprogs ];
    # A changed diskQuota is applied at a start: a switch that changes it restarts the unit.
    restartTriggers = [ (builtins.toJSON u.disk) ];
    requires = [ u.network.unit ];
    after = [ u.network.unit ];
  }) plan.users
  // lib.mapAttrs' (_: u: lib.nameValuePair (unitName u.network.unit) {
    description = "podman network of ${u.name}'s code-server";
    path = [ config.virtualisation.podman.package ];
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
    # Removed when stopped, so changed options take effect at the next start.
    script = ''
      podman network exists ${lib.escapeShellArg u.network.name} || \
        podman network create ${lib.escapeShellArgs u.network.createOptions} ${lib.escapeShellArg u.network.name}
    '';
    postStop = "podman network rm --force ${lib.escapeShellArg u.network.name}";
  }) plan.users;
}

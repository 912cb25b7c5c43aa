# The plan's containers onto virtualisation.oci-containers (podman), each unit ready
# only when code-server answers its health check, each on its own isolated podman
# network (created by a oneshot unit before the container's). A container whose
# code-server dies is restarted by systemd: oci-containers' units have Restart=always.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;

  # VARIABLE=<file contents> for each secret file, composed as root at each start.
  # Values pass through shell variables and builtins only: never an argv.
  composeSecrets = secrets: ''
    install -d -m 0700 ${lib.escapeShellArg plan.runtimeDir}
    umask 077
    tmp=$(mktemp ${lib.escapeShellArg secrets.envFile}.XXXXXX)
    ${lib.concatMapStrings (s: ''
      value=$(cat ${lib.escapeShellArg s.file})
      case "$value" in *$'\n'*)
        echo "code-server-multi: ${s.file} holds more than one line; it must hold only the secret" >&2
        rm -f "$tmp"; exit 1;;
      esac
      printf '%s=%s\n' ${s.variable} "$value" >> "$tmp"
    '') secrets.fromFiles}
    mv "$tmp" ${lib.escapeShellArg secrets.envFile}
  '';

  networkUnit = u: "podman-network-${u.network.name}";
in
lib.mkIf cfg.enable {
  virtualisation.podman.enable = true;
  virtualisation.oci-containers.backend = "podman";

  virtualisation.oci-containers.containers = lib.mapAttrs' (_: u: lib.nameValuePair u.container.name {
    inherit (u.container) image cmd user environment environmentFiles ports volumes extraOptions;
    imageStream = cfg.imageStream;
    pull = "never";
    podman.sdnotify = "healthy";
  }) plan.users;

  systemd.services = lib.mapAttrs' (_: u: lib.nameValuePair "podman-${u.container.name}" {
    preStart = lib.mkBefore (composeSecrets u.secrets);
    requires = [ "${networkUnit u}.service" ];
    after = [ "${networkUnit u}.service" ];
  }) plan.users
  // lib.mapAttrs' (_: u: lib.nameValuePair (networkUnit u) {
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

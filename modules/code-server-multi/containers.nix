# The plan's containers onto virtualisation.oci-containers (podman), each unit ready
# only when code-server answers its health check.
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
  }) plan.users;
}

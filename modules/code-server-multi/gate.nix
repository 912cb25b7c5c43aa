# The login gate (csm gate serve, plan.gate): the one front door nginx asks about every
# request to a user's host. It faces the network, so it runs as its own system account
# with systemd's hardening, reads the password files as systemd credentials (never
# the files themselves), listens only on a Unix socket that nginx's group reaches,
# and starts containers only through the root side's control socket (idle.nix).
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;
  g = plan.gate;
in
lib.mkIf cfg.enable {
  assertions = [{
    assertion = cfg.package != null;
    message = "services.code-server-multi.package (the csm CLI) must be set: it runs the login gate; the flake's module sets it.";
  }];

  users.users.${g.user} = { isSystemUser = true; group = g.user; description = "code-server-multi login gate"; };
  users.groups.${g.user} = { };
  # nginx's workers reach the gate's and the users' sockets through this group only.
  users.groups.${g.proxyGroup} = { };
  users.users.${config.services.nginx.user}.extraGroups = [ g.proxyGroup ];

  systemd.services.${lib.removeSuffix ".service" g.unit} = {
    description = "code-server-multi login gate";
    wantedBy = [ "multi-user.target" ];
    before = [ "nginx.service" ];
    after = [ "systemd-tmpfiles-setup.service" ];
    restartTriggers = [ config.environment.etc.${lib.removePrefix "/etc/" cfg.planFile}.source ];
    serviceConfig = {
      ExecStart = "${lib.getExe' cfg.package "csm"} gate serve --plan ${cfg.planFile} --credentials %d";
      User = g.user;
      Group = g.user;
      # One credential per user, named after the user: the gate reads %d/<user>.
      LoadCredential = lib.mapAttrsToList (name: u: "${name}:${u.password.file}") plan.users;
      Restart = "on-failure";
      RestartSec = 2;
      UMask = "0077";
      ReadWritePaths = [ g.directory g.stateDir ];
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      PrivateNetwork = true;   # Unix sockets only: no network of its own at all
      RestrictAddressFamilies = [ "AF_UNIX" ];
      NoNewPrivileges = true;
      CapabilityBoundingSet = "";
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      ProtectProc = "invisible";
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      LockPersonality = true;
      SystemCallArchitectures = "native";
      SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
    };
  };
}

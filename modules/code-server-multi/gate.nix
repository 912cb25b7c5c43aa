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
  # systemd expands %-specifiers in LoadCredential's path: a "%" in a file name is "%%".
  escapeSpecifiers = lib.replaceStrings [ "%" ] [ "%%" ];
in
lib.mkIf cfg.enable {
  assertions = [
    {
      assertion = cfg.package != null;
      message = "services.code-server-multi.package (the csm CLI) must be set: it runs the login gate; the flake's module sets it.";
    }
    {
      # The gate refuses to run as root; an account of that name would be root's.
      assertion = !(lib.elem g.user [ "root" config.services.nginx.user ]);
      message = "the login gate's account (plan.gate.user = ${g.user}) must be its own, not root's or nginx's.";
    }
  ];

  users.users.${g.user} = {
    isSystemUser = true;
    group = g.user;
    description = "code-server-multi login gate";
  };
  users.groups.${g.user} = { };
  # nginx's workers reach the gate's and the users' sockets through this group only
  # (the sockets' directories are <owner>:${g.proxyGroup} 0750/0710, plan.directories).
  # systemd gives nginx.service its user's groups at each start.
  users.groups.${g.proxyGroup} = { };
  users.users.${config.services.nginx.user}.extraGroups = [ g.proxyGroup ];
  # A process keeps the groups it started with, and a reload forks nginx's new workers
  # from the old master: the first switch to this module must restart nginx, even on a
  # host with services.nginx.enableReload (whose nginx.service has no restart triggers
  # of its own). This line changes the unit only when the group does.
  systemd.services.nginx.restartTriggers = [ "supplementary group ${g.proxyGroup}" ];

  systemd.services.${lib.removeSuffix ".service" g.unit} = {
    description = "code-server-multi login gate";
    wantedBy = [ "multi-user.target" ];
    # Its socket directory and state directory come from tmpfiles (directories.nix),
    # with the same owners and modes as on the portable path. At boot every service is
    # after sysinit.target, which systemd-tmpfiles-setup is before; on a switch, NixOS
    # restarts sysinit-reactivation.target (tmpfiles' resetup) before it starts or
    # restarts other units, so new rules are applied first there too.
    after = [ "systemd-tmpfiles-setup.service" ];
    # Up before nginx at boot, so the first requests find it. Not required by nginx:
    # an upstream on a Unix socket that does not exist yet is no error for `nginx -t`
    # or its start, only a 502/500 for the requests made while the gate is down.
    before = [ "nginx.service" ];
    # A new plan (users, limits, pages) takes a new process; a changed password file
    # path changes LoadCredential, which restarts it by itself.
    restartTriggers = [ config.environment.etc.${lib.removePrefix "/etc/" cfg.planFile}.source ];
    unitConfig = {
      # The front door keeps trying: a password file that does not exist yet (the
      # admin's first `csm passwd`) fails the credential step, and the gate comes up by
      # itself on a later try once it exists. Backoff below keeps the tries rare.
      StartLimitIntervalSec = 0;
    };
    serviceConfig = {
      ExecStart = "${lib.getExe' cfg.package "csm"} gate serve --plan ${cfg.planFile} --credentials %d";
      User = g.user;
      Group = g.user;
      # One credential per user, named after the user: the gate reads %d/<user>.
      # systemd (as root) copies each file at the start into a ramfs only this unit's
      # account can read, so the files themselves stay root's (0600). A credential is
      # not refreshed while the unit runs (systemd 258 has no reload for them): a
      # changed password file takes a restart (`csm passwd --plan` does try-restart).
      LoadCredential = lib.mapAttrsToList (name: u: "${name}:${escapeSpecifiers u.password.file}") plan.users;
      Restart = "always";
      RestartSec = "2s";
      RestartSteps = 5;
      RestartMaxDelaySec = "1min";
      UMask = "0077";

      # The only paths it writes: its socket directory and its sessions. Both must exist
      # when it starts (tmpfiles, above); StateDirectory= is not used because the state
      # directory is a setting anywhere on the host, not only below /var/lib, and
      # tmpfiles gives it the same owner and mode as the portable runner does.
      ReadWritePaths = [ g.directory g.stateDir ];
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      # No network of its own at all (only a loopback nobody else is on). Unix sockets
      # in the file system are not network-namespaced: nginx still reaches g.socket and
      # the gate still reaches the control socket (connect() on a read-only mount works
      # too, so ProtectSystem does not get in the way either).
      PrivateNetwork = true;
      RestrictAddressFamilies = [ "AF_UNIX" ];
      NoNewPrivileges = true;
      CapabilityBoundingSet = "";
      AmbientCapabilities = "";
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      ProtectProc = "invisible";
      ProcSubset = "pid";
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      RemoveIPC = true;
      LockPersonality = true;
      SystemCallArchitectures = "native";
      SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
      # A call outside the filter fails (EPERM, a Python exception in the journal)
      # instead of killing the process with SIGSYS.
      SystemCallErrorNumber = "EPERM";
    };
  };
}

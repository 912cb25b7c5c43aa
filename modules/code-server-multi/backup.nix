# Scheduled archives of every user's workspace and config, made by the same
# `csm backup` an admin runs by hand (so `csm restore` reads them).
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg.plan) backup;
in
lib.mkIf (cfg.enable && backup.enable) {
  assertions = [{
    assertion = cfg.package != null;
    message = "services.code-server-multi.backup needs services.code-server-multi.package (the csm CLI); the flake's module sets it.";
  }];
  systemd.services.code-server-multi-backup = {
    description = "Archive code-server-multi workspaces";
    path = [ config.virtualisation.podman.package ];
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${lib.getExe' cfg.package "csm"} backup --plan ${lib.escapeShellArg cfg.planFile} --to ${lib.escapeShellArg backup.target}";
    };
  };
  systemd.timers.code-server-multi-backup = {
    wantedBy = [ "timers.target" ];
    timerConfig = { OnCalendar = backup.schedule; Persistent = true; };
  };
  systemd.tmpfiles.rules = [ "d ${backup.target} 0700 root root -" ];
}

# Idle stop and wake after login (plan.idle): one root service runs `csm idle serve`,
# the idle checker and the waker the gate asks through the control socket
# (plan.gate.control). It starts and stops users through their units
# podman-<container>.service: a stop systemd was asked for is not undone by the
# units' Restart=always, and a start it makes is the same as at boot.
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
in
lib.mkIf (cfg.enable && cfg.plan.idle.enable) {
  assertions = [{
    assertion = cfg.package != null;
    message = "services.code-server-multi.idleStopAfter needs services.code-server-multi.package (the csm CLI runs the idle checker and the waker); the flake's module sets it. Or set idleStopAfter = null.";
  }];
  systemd.services.code-server-multi-idle = {
    description = "Stop idle code-server-multi users and start them on their next visit";
    wantedBy = [ "multi-user.target" ];
    after = [ "network.target" ];
    path = [ config.virtualisation.podman.package ];   # systemctl is on every unit's path
    # A new plan (users, limits) takes a new process.
    restartTriggers = [ config.environment.etc.${lib.removePrefix "/etc/" cfg.planFile}.source ];
    serviceConfig = {
      ExecStart = "${lib.getExe' cfg.package "csm"} idle serve --plan ${cfg.planFile} --systemd";
      Restart = "on-failure";
      RestartSec = 5;
    };
  };
}

# The admin's tools on the host: the csm CLI, and the plan it reads at the path
# the option planFile names (`csm status --plan /etc/code-server-multi/plan.json`).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.code-server-multi;
in
lib.mkIf cfg.enable {
  environment.etc.${lib.removePrefix "/etc/" cfg.planFile}.source =
    pkgs.writeText "code-server-multi-plan.json" (builtins.toJSON cfg.plan);
  environment.systemPackages = lib.optional (cfg.package != null) cfg.package;
}

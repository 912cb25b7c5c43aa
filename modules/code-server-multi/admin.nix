# The admin's tools on the host: the csm CLI, and the plan it reads at a stable
# path (`csm status --plan /etc/code-server-multi/plan.json`), named once here as
# the option planFile for everything else that runs csm (backup.nix).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.code-server-multi;
  etcName = "code-server-multi/plan.json";
in
{
  options.services.code-server-multi.planFile = lib.mkOption {
    type = lib.types.str;
    internal = true;
    readOnly = true;
    default = "/etc/${etcName}";
    description = "Where the host's csm reads the plan (`csm --plan`).";
  };

  config = lib.mkIf cfg.enable {
    environment.etc.${etcName}.source =
      pkgs.writeText "code-server-multi-plan.json" (builtins.toJSON cfg.plan);
    environment.systemPackages = lib.optional (cfg.package != null) cfg.package;
  };
}

# The admin's tools on the host: the csm CLI, and the plan it reads at the path
# the option planFile names (`csm status --plan /etc/code-server-multi/plan.json`).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.code-server-multi;
in
lib.mkIf cfg.enable {
  # The consumer checks what the module hands it, at build time: a plan this csm
  # cannot read fails the build instead of the gate's start.
  environment.etc.${lib.removePrefix "/etc/" cfg.planFile}.source =
    if cfg.package == null then pkgs.writeText "code-server-multi-plan.json" (builtins.toJSON cfg.plan)
    else pkgs.runCommand "code-server-multi-plan.json" {
      nativeBuildInputs = [ cfg.package ];
      plan = builtins.toJSON cfg.plan;
      passAsFile = [ "plan" ];
    } ''
      csm check-plan "$planPath"
      cp "$planPath" "$out"
    '';
  environment.systemPackages = lib.optional (cfg.package != null) cfg.package;
}

# Host directories of the plan, owned by each user's mapped uid.
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;
  rule = d: "d ${d.path} ${d.mode} ${toString d.uid} ${toString d.gid} -";
in
lib.mkIf cfg.enable {
  systemd.tmpfiles.rules =
    map rule (plan.directories ++ lib.concatMap (u: u.directories) (lib.attrValues plan.users))
    ++ [ "d ${plan.runtimeDir} 0700 root root -" ];
}

# Host directories of the plan, owned by each user's mapped uid, and the files each
# new home starts with (tmpfiles `f`: written only when missing).
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;
  rule = d: "d ${d.path} ${d.mode} ${toString d.uid} ${toString d.gid} -";
  seed = f: "f ${f.path} ${f.mode} ${toString f.uid} ${toString f.gid} - ${f.content}";
in
lib.mkIf cfg.enable {
  systemd.tmpfiles.rules =
    map rule (plan.directories ++ lib.concatMap (u: u.directories) (lib.attrValues plan.users))
    ++ map seed (lib.concatMap (u: u.seedFiles) (lib.attrValues plan.users))
    ++ [ "d ${plan.runtimeDir} 0700 root root -" ];
}

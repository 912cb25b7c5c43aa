# Host directories of the plan, owned by each user's mapped uid. The files each new
# home starts with are written by the unit's `csm prepare` (containers.nix), byte for
# byte: tmpfiles' `f` would expand % specifiers and \ escapes in them.
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;
  rule = d: "d ${d.path} ${d.mode} ${toString d.uid} ${toString d.gid} -";
in
lib.mkIf cfg.enable {
  systemd.tmpfiles.rules =
    map rule (plan.directories ++ lib.concatMap (u: u.directories) (lib.attrValues plan.users));
}

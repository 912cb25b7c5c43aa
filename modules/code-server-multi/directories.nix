# Host directories of the plan: each user's, owned by their mapped uid, and the
# sockets' and the gate's, owned by the gate's account and nginx's proxy group. An
# owner is a number or an account name (the gate's accounts are declared by gate.nix;
# tmpfiles resolves names when it runs, after NixOS has created the accounts). The
# files each new home starts with are written by the unit's `csm prepare`
# (containers.nix), byte for byte: tmpfiles' `f` would expand % specifiers and \
# escapes in them.
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

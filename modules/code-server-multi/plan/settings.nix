# The settings with their defaults (defaults.nix), and what each user's values come
# to: host ids, idle stop, disk quota. Validation (validate.nix) says what is wrong
# with them; everything else reads them from here.
{ lib, defaults, settings }:
let
  inherit (builtins) attrNames isAttrs mapAttrs;
  inherit (lib) mod nameHash parseDuration;
in
rec {
  s = removeAttrs defaults [ "user" ] // settings;
  withDefaults = section: defaults.${section} // (if isAttrs (s.${section} or null) then s.${section} else { });
  opencode = withDefaults "opencode";
  acme = withDefaults "acme";
  tls = withDefaults "tls";
  tlsFiles = tls.certificateFile != null || tls.keyFile != null;
  backup = withDefaults "backup";
  landingPage = withDefaults "landingPage";
  gateSettings = withDefaults "gate";
  vscodeSettings = if isAttrs s.vscodeSettings then s.vscodeSettings else { };
  usersIn = if isAttrs (s.users or null) then s.users else { };
  users = mapAttrs (_: u: defaults.user // u) usersIn;
  names = attrNames users;

  # Host uids/gids: each user's container maps idRangeSize of them, from a base far
  # above any host account, picked by the name's hash unless uidBase says otherwise.
  idRangeSize = 65536;
  idBaseStart = 268435456;  # 2^28
  idSlots = 4096;
  idBaseOf = name: let u = users.${name}; in
    if u.uidBase == null then idBaseStart + mod (nameHash name) idSlots * idRangeSize else u.uidBase;

  # "default" in a user's idleStopAfter or diskQuota: the top-level setting.
  idleSettingOf = name: let v = users.${name}.idleStopAfter; in if v == "default" then s.idleStopAfter else v;
  idleSecondsOf = name: let v = idleSettingOf name; in if v == null then null else parseDuration v;
  diskSettingOf = name: let v = users.${name}.diskQuota; in if v == "default" then s.diskQuota else v;
}

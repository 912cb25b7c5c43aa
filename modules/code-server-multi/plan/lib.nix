# The helpers nixpkgs lib would give the plan, written with builtins only: the
# runner evaluates the plan with a plain nix-instantiate and no nixpkgs.
let
  inherit (builtins)
    all concatStringsSep elemAt filter foldl' genList hashString isFloat isInt isString
    listToAttrs match replaceStrings stringLength substring toJSON;
in
rec {
  chars = s: genList (i: substring i 1 s) (stringLength s);
  toLower = replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (chars "abcdefghijklmnopqrstuvwxyz");
  mod = a: b: a - (a / b) * b;
  optional = cond: x: if cond then [ x ] else [ ];
  optionalAttrs = cond: as: if cond then as else { };
  optionalString = cond: s: if cond then s else "";
  showList = xs: concatStringsSep ", " xs;
  escapeHtml = replaceStrings [ "&" "<" ">" "\"" ] [ "&amp;" "&lt;" "&gt;" "&quot;" ];
  # A number given as a Nix number or a string, as text ("1.5", not "1.500000").
  numberText = x: if isString x then x else toJSON x;
  # The parts of s between the matches of a regular expression.
  splitOn = re: s: filter isString (builtins.split re s);

  # A stable number from a name: the first 32 bits of its sha256.
  hexValue = listToAttrs (genList (i: { name = substring i 1 "0123456789abcdef"; value = i; }) 16);
  nameHash = name: foldl' (acc: c: acc * 16 + hexValue.${c}) 0 (chars (substring 0 8 (hashString "sha256" name)));

  # "3g", "2.5G", "512m", "1024k", "3gb", 3221225472 -> bytes, or null.
  sizeUnits = { "" = 1; k = 1024; m = 1048576; g = 1073741824; t = 1099511627776; };
  parseSize = x:
    if isInt x then (if x > 0 then x else null)
    else if !isString x then null
    else
      let m = match "(0|[1-9][0-9]*)(\\.[0-9]+)?([kmgt]?)(i?b)?" (toLower x);
      in if m == null then null
         else builtins.floor (builtins.fromJSON "${elemAt m 0}${if elemAt m 1 == null then "" else elemAt m 1}" * sizeUnits.${elemAt m 2});

  # "30m", "1h", "7d", "90 s", 3600 -> seconds, or null.
  durationUnits = { s = 1; m = 60; h = 3600; d = 86400; };
  parseDuration = x:
    if isInt x then (if x > 0 then x else null)
    else if !isString x then null
    else let m = match "([1-9][0-9]*) ?([smhd])" x;
         in if m == null then null else builtins.fromJSON (elemAt m 0) * durationUnits.${elemAt m 1};

  isCpuCount = x: let t = numberText x; in (isString x || isInt x || isFloat x)
    && match "(0|[1-9][0-9]*)(\\.[0-9]+)?" t != null && builtins.fromJSON t > 0;

  isDnsLabel = s: isString s && match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" s != null;
  isHostname = s: isString s && stringLength s <= 253 && all isDnsLabel (splitOn "\\." s);
  # A secret's path must stay a string: a Nix path would be copied into the
  # world-readable store.
  isAbsolutePath = p: isString p && match "/.*" p != null;
  # No ".", "..", "//" or trailing slash: a path that is what it says.
  isNormalPath = p: isAbsolutePath p && (p == "/" || match "(/[^/]+)+" p != null)
    && all (c: c != "." && c != "..") (splitOn "/" p);
  isBelow = dir: p: p == dir || (stringLength p > stringLength dir && substring 0 (stringLength dir + 1) p == "${dir}/");
}

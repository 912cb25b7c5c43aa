# The parts of nixpkgs' lib the flake's own files use, in builtins only, for hosts
# without a nixpkgs lib checkout (NIXPKGS_LIB unset). Each function has nixpkgs'
# semantics; callPackageWith in particular fills EVERY argument the package set has,
# defaults or not, as lib.customisation.callPackageWith does.
let
  lib = {
    inherit (builtins) filter attrValues concatStringsSep;

    genAttrs = names: f: builtins.listToAttrs (map (n: lib.nameValuePair n (f n)) names);
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (builtins.attrNames set);
    concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
    concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    removePrefix =
      prefix: s:
      if lib.hasPrefix prefix s then
        builtins.substring (builtins.stringLength prefix) (builtins.stringLength s) s
      else
        s;
    escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
    optional = cond: x: if cond then [ x ] else [ ];
    warn = msg: builtins.trace "evaluation warning: ${msg}";
    optionalAttrs = cond: set: if cond then set else { };
    versions.major = v: builtins.head (builtins.splitVersion v);
    getExe = p: "${p}/bin/${p.meta.mainProgram or p.pname or p.name}";

    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkDefault = lib.mkOverride 1000;
    mkForce = lib.mkOverride 50;
    mkMerge = contents: { _type = "merge"; inherit contents; };

    callPackageWith =
      autoArgs: fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
        fargs = builtins.functionArgs f;
        allArgs = builtins.intersectAttrs fargs autoArgs // args;
        missing = builtins.filter (n: !fargs.${n}) (builtins.attrNames (removeAttrs fargs (builtins.attrNames allArgs)));
      in
      if missing == [ ] then
        f allArgs
      else
        throw "lib.customisation.callPackageWith: Function called without required argument \"${builtins.head missing}\"";

    sourceByRegex =
      src: regexes:
      builtins.path {
        path = src;
        name = "source";
        filter =
          path: _:
          let
            relative = lib.removePrefix "${toString src}/" path;
          in
          builtins.any (re: builtins.match re relative != null) regexes;
      };
  };
in
lib

# The module's option declarations as JSON, with builtins only: a stand-in `lib`
# whose mkOption returns the declaration and whose types describe themselves.
#   nix-instantiate --eval --strict --json scripts/options-json.nix
let
  t = description: { inherit description; };
  types = {
    str = t "string";
    bool = t "boolean";
    port = t "16 bit unsigned integer (port)";
    package = t "package";
    raw = t "raw value";
    anything = t "anything";
    unspecified = t "unspecified value";
    ints.unsigned = t "unsigned integer";
    ints.positive = t "positive integer";
    ints.between = lo: hi: t "integer between ${toString lo} and ${toString hi} (both inclusive)";
    nullOr = x: t "null or ${x.description}";
    listOf = x: t "list of ${x.description}";
    attrsOf = x: (t "attribute set of ${x.description}") // (if x ? submodule then { inherit (x) submodule; } else { });
    strMatching = re: t "string matching \"${re}\"";
    submodule = f: (t "submodule") // { submodule = f; };
    enum = xs: t "one of ${builtins.concatStringsSep ", " xs}";
    either = a: b: t "${a.description} or ${b.description}";
  };
  lib = {
    inherit types;
    mkOption = decl: decl // { _option = true; };
    mkEnableOption = what: { _option = true; type = types.bool; default = false; example = true; description = "Whether to enable ${what}."; };
    literalExpression = text: { _literal = text; };
    mkIf = _: _: { };
    mkRemovedOptionModule = _: _: { };
  };
  module = import ../modules/code-server-multi { inherit lib; config = { }; };
  show = v: if builtins.isAttrs v && v ? _literal then v._literal else builtins.toJSON v;
  flatten = prefix: decls: builtins.concatLists (map (name:
    let d = decls.${name}; path = prefix + "." + name; in
    if d ? _option && (d.visible or true) == false then [ ]
    else if d ? _option then
      [ ({ name = path; type = d.type.description; description = d.description; internal = d.internal or false; }
         // (if d ? defaultText then { default = show d.defaultText; } else if d ? default then { default = show d.default; } else { })
         // (if d ? example then { example = show d.example; } else { })) ]
      ++ (if d.type ? submodule then flatten "${path}.<name>" ((d.type.submodule { name = "<name>"; }).options) else [ ])
    else flatten path d) (builtins.attrNames decls));
in
builtins.filter (o: !o.internal) (flatten "services" { inherit (module.options.services) code-server-multi; })

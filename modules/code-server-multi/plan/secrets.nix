# Keys, tokens and passwords written out in the opencode settings: they would land in
# the Nix store and in every container's config. A value passes only if, apart from
# "{env:VAR}" / "{file:PATH}" references, it holds nothing but an auth scheme
# ("Bearer {env:VAR}"): under a name that means a secret (…apiKey(s), …token,
# …secret, …password, privateKey, credentials, Authorization, Cookie) or anything
# below one, wherever it sits; and, in every string, a URL's secret-named query
# parameter (?key=, ?api_key=, ?token=) or the password of its user:password@.
# The result: one problem per value, naming where it sits and what to do.
{ lib, opencode }:
let
  inherit (builtins) attrNames concatLists concatStringsSep elemAt filter genList head isAttrs isList isString length match replaceStrings;
  inherit (lib) chars optional splitOn toLower;

  normalizedKeyName = replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") (chars "abcdefghijklmnopqrstuvwxyz" ++ [ "" "" ]);
  secretName = n: match ".*(apikey|accesskey|secretkey|privatekey|token|secret|password|passwd|authorization|credential|cookie)s?" (normalizedKeyName n) != null;
  # The text of v outside its references; "" for "{env:A}{env:B}".
  literalPart = v: concatStringsSep "" (splitOn "\\{(env|file):[^}]+}" v);
  hasReference = v: match ".*\\{(env|file):[^}]+}.*" v != null;
  # Beside references: a scheme ("Bearer "), cookie names ("sid={env:S}"), separators.
  onlyReferences = v: hasReference v
    && match "((bearer|basic|token|bot) +)?([a-z0-9_.-]+=|[ ;:])*" (toLower (literalPart v)) != null;
  secretHint = "give the key through users.<name>.environmentFiles";
  literalProblem = path: v:
    if !hasReference v then
      "${path} is written out; it would land in the Nix store and in every container's config. Use \"{env:VARIABLE}\" and ${secretHint}"
    else if !onlyReferences v then
      "${path} holds text beside its reference (only a scheme such as \"Bearer \" may stand there); it would land in the Nix store and in every container's config. Put the whole key in the variable, \"{env:VARIABLE}\", and ${secretHint}"
    else null;
  # In any string: user:password@ of a URL, and ?name=value pairs whose name means a key.
  urlProblems = path: v:
    let
      userinfo = match ".*[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#@ ]*)@.*" v;
      password = if userinfo == null then null else match "[^:]*:(.*)" (head userinfo);
      query = match ".*://[^?# ]*\\?([^# ]*).*" v;
      params = if query == null then [ ] else
        filter (p: p != null) (map (match "([^=]*)=(.*)") (splitOn "&" (head query)));
      secretParams = filter (p: (secretName (head p) || toLower (head p) == "key")
        && elemAt p 1 != "" && !onlyReferences (elemAt p 1)) params;
    in
    optional (password != null && head password != "" && !onlyReferences (head password))
      "${path} holds a password in a URL (user:password@host); it would land in the Nix store and in every container's config. Write \"https://user:{env:VARIABLE}@host\" and ${secretHint}"
    ++ map (p: "${path} holds a key in a URL's query (${head p}=…); it would land in the Nix store and in every container's config. Write \"${head p}={env:VARIABLE}\" and ${secretHint}") secretParams;
  writtenOutSecrets = path: secret: v:
    if isAttrs v then concatLists (map (n: writtenOutSecrets "${path}.${n}" (secret || secretName n) v.${n}) (attrNames v))
    else if isList v then concatLists (genList (i: writtenOutSecrets "${path}.${toString i}" secret (elemAt v i)) (length v))
    else if !isString v then [ ]
    else filter (p: p != null) [ (if secret then literalProblem path v else null) ] ++ urlProblems path v;
in
writtenOutSecrets "opencode.provider" false opencode.provider
++ writtenOutSecrets "opencode.extraConfig" false opencode.extraConfig

# The plan: a pure function from settings to everything a deployment runs.
#
#   import ./plan.nix (import ../../examples/team.nix)
#
# Builtins only (no nixpkgs), so the NixOS module and the portable runner
# (`nix-instantiate --eval --strict --json`) compute the very same values.
# Defaults live in defaults.nix; the shape of the result is described in
# docs/plan.md. Invalid settings throw one message listing every problem, each
# naming the field and what to do.
settings:
let
  inherit (builtins)
    all any attrNames concatLists concatStringsSep elem elemAt filter foldl' genList
    hashString head isAttrs isBool isFloat isInt isList isString length listToAttrs
    mapAttrs match replaceStrings stringLength substring toJSON typeOf;

  defaults = import ./defaults.nix;

  # ---- helpers that nixpkgs lib would give us --------------------------------
  chars = s: genList (i: substring i 1 s) (stringLength s);
  toLower = replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (chars "abcdefghijklmnopqrstuvwxyz");
  mod = a: b: a - (a / b) * b;
  optional = cond: x: if cond then [ x ] else [ ];
  optionalAttrs = cond: as: if cond then as else { };
  quote = s: "\"${s}\"";
  showList = xs: concatStringsSep ", " xs;
  escapeHtml = replaceStrings [ "&" "<" ">" "\"" ] [ "&amp;" "&lt;" "&gt;" "&quot;" ];
  # A number given as a Nix number or a string, as text ("1.5", not "1.500000").
  numberText = x: if isString x then x else toJSON x;

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

  isCpuCount = x: let t = numberText x; in (isString x || isInt x || isFloat x)
    && match "(0|[1-9][0-9]*)(\\.[0-9]+)?" t != null && builtins.fromJSON t > 0;

  isDnsLabel = s: isString s && match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" s != null;
  isHostname = s: isString s && stringLength s <= 253
    && all isDnsLabel (filter isString (builtins.split "\\." s));
  # A secret's path must stay a string: a Nix path would be copied into the
  # world-readable store.
  isAbsolutePath = p: isString p && match "/.*" p != null;
  # No ".", "..", "//" or trailing slash: a path that is what it says.
  isNormalPath = p: isAbsolutePath p && (p == "/" || match "(/[^/]+)+" p != null)
    && all (c: c != "." && c != "..") (filter isString (builtins.split "/" p));
  isBelow = dir: p: p == dir || (stringLength p > stringLength dir && substring 0 (stringLength dir + 1) p == "${dir}/");
  directoryProblem = field: p:
    if !isAbsolutePath p then "${field} = ${toJSON p} must be an absolute path"
    else if !isNormalPath p then "${field} = ${toJSON p} must be a plain absolute path (no \".\", \"..\", \"//\" or trailing slash)"
    else if plainCharsProblem field p != null then plainCharsProblem field p
    else if elem p sharedDirs then "${field} = ${toJSON p} is a shared system directory${optionalString (elem p [ "/tmp" "/var/tmp" "/dev/shm" "/run/lock" ]) " that everyone may write to"}; use a directory of its own, e.g. ${toJSON defaults.${field}}"
    else if any (d: isBelow d p) systemTrees then "${field} = ${toJSON p} lies in a system directory (${head (filter (d: isBelow d p) systemTrees)}); use a directory of its own, e.g. ${toJSON defaults.${field}}"
    else null;
  optionalString = cond: s: if cond then s else "";
  # Host directories are written unquoted into tmpfiles rules, podman's volume
  # arguments and systemd lines: only characters none of them treats specially.
  plainCharsProblem = field: p:
    if match "[A-Za-z0-9._/+-]+" p != null then null
    else "${field} = ${toJSON p} may hold only letters, digits, \".\", \"_\", \"+\", \"-\" and \"/\" (no spaces, \"%\" or \":\"): it is written into tmpfiles rules, volume arguments and systemd units as it is";
  pathProblem = field: p:
    if typeOf p == "path" then "${field} is a Nix path (${toString p}), which would copy the file into the world-readable Nix store; give it as a string, e.g. \"/run/secrets/...\""
    else if !isAbsolutePath p then "${field} must be an absolute path, got ${toJSON p}"
    else null;

  # ---- constants of the design ----------------------------------------------
  reservedNames = [ "www" "mail" "smtp" "imap" "pop" "pop3" "ftp" "mx" "ns" "ns1" "ns2" "webmail"
                    "autoconfig" "autodiscover" "wpad" "localhost" "admin" "api" "static" ];
  portSpan = 1000;          # automatic ports: basePort .. basePort + portSpan - 1
  idRangeSize = 65536;      # host uids/gids given to one user's container
  idBaseStart = 268435456;  # 2^28: far above any host account
  idSlots = 4096;
  # What the image and the plan must agree on, written once for both image recipes.
  contract = builtins.fromJSON (builtins.readFile ../../image/contract.json);
  containerPort = contract.port;
  healthCheck = [ "curl" "-fsS" "-o" "/dev/null" "http://127.0.0.1:${toString containerPort}${contract.healthPath}" ];
  containerUid = contract.uid;  # the image's user
  containerGid = contract.gid;
  inherit (contract) home project extensionsDir;
  minMemory = 536870912;    # 512 MiB: code-server does not start in less

  nginxLimits = {
    clientMaxBodySize = "128m";  # VS Code uploads of 100 MB, with room for encoding
    proxyTimeout = "3600s";      # a quiet terminal's WebSocket stays open an hour
    # A coarse flood guard on password submissions (POST /login) per client
    # address; loading the login page is never counted. A class behind one router
    # (one address) logs in at once: 30 at a time, then one every 2 s. Wrong
    # passwords are held to a few a minute per address by code-server itself.
    loginRate = "30r/m";
    loginBurst = 30;
  };
  sessionCookie = "code-server-session";

  # Each user's container on a network of its own: podman's `isolate` option drops
  # traffic between isolated networks, so no container reaches another's (by
  # address; with DNS off, not by name either). The internet and the host's
  # public side stay reachable through the bridge. podman picks a free subnet
  # (no fixed one here could be known not to clash with the host's own networks).
  networkOptions = [ "isolate=true" ];
  # podman restarts a container whose code-server died; on NixOS the container's
  # systemd unit does (virtualisation.oci-containers sets Restart=always), and
  # podman's --restart cannot be combined with the unit's --rm.
  restartPolicy = "always";

  # Directories that must never be workspaceBase or runtimeDir: the root, system
  # trees (refused with everything below them) and shared or world-writable ones.
  systemTrees = [ "/etc" "/usr" "/bin" "/sbin" "/lib" "/lib32" "/lib64" "/libx32" "/boot" "/proc" "/sys" "/dev" "/nix" ];
  sharedDirs = [ "/" "/var" "/var/lib" "/var/cache" "/var/log" "/var/tmp" "/var/spool" "/var/mail" "/run" "/run/user"
                 "/run/lock" "/tmp" "/root" "/home" "/srv" "/opt" "/mnt" "/media" "/dev/shm" ];
  allowedVolumeOptions = [ "ro" "rw" "z" "Z" ];

  # ---- settings with defaults -------------------------------------------------
  knownTop = [ "domain" "workspaceBase" "image" "basePort" "runtimeDir" "namePrefix" "users" "opencode" "acme" "tls" "backup" "landingPage" "vscodeSettings" "idleStopAfter" ];
  s = removeAttrs defaults [ "user" ] // settings;
  vscodeSettings = if isAttrs s.vscodeSettings then s.vscodeSettings else { };
  withDefaults = section: defaults.${section} // (if isAttrs (s.${section} or null) then s.${section} else { });
  opencode = withDefaults "opencode";
  acme = withDefaults "acme";
  tls = withDefaults "tls";
  tlsFiles = tls.certificateFile != null || tls.keyFile != null;
  backup = withDefaults "backup";
  landingPage = withDefaults "landingPage";
  usersIn = if isAttrs (s.users or null) then s.users else { };
  users = mapAttrs (_: u: defaults.user // u) usersIn;
  names = attrNames users;

  unknownKeys = where: known: as:
    map (k: "${where}${k} is not a setting (known: ${showList known}); check its spelling")
      (filter (k: !elem k known) (attrNames as));

  # ---- per-user derived values ----------------------------------------------
  autoPort = name: s.basePort + mod (nameHash name) portSpan;
  portOf = name: if users.${name}.port == null then autoPort name else users.${name}.port;
  idBaseOf = name: let u = users.${name}; in
    if u.uidBase == null then idBaseStart + mod (nameHash name) idSlots * idRangeSize else u.uidBase;
  hostUidOf = name: idBaseOf name + containerUid;

  # ---- validation --------------------------------------------------------------
  basePortOk = isInt s.basePort && s.basePort >= 1024 && s.basePort + portSpan - 1 <= 65535;

  userProblems = name:
    let
      u = users.${name};
      # A name that is no plain word (a newline, a quote) is shown escaped, so each
      # problem stays on one line of the message.
      at = if match "[A-Za-z0-9_.-]+" name != null then "users.${name}" else "users.${toJSON name}";
      hard = parseSize u.memoryLimit;
      soft = parseSize u.memorySoftLimit;
      passwordFiles = filter (f: u.${f} != null) [ "hashedPasswordFile" "passwordFile" ];
      sizeProblem = field: v: optional (parseSize v == null)
        "${at}.${field} = ${toJSON v} is not a size; write it like \"3g\", \"2.5g\" or \"512m\"";
    in
      unknownKeys "${at}." (attrNames defaults.user) usersIn.${name}
      ++ optional (!isDnsLabel name)
        "${at}: the name ${toJSON name} is not a DNS label; use 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash"
      ++ optional (elem name reservedNames)
        "${at}: the name ${toJSON name} is reserved (${showList reservedNames}); choose another name"
      ++ optional (u.port != null && !(isInt u.port && u.port >= 1024 && u.port <= 65535))
        "${at}.port = ${toJSON u.port} is not a port from 1024 to 65535"
      ++ optional (u.port != null && basePortOk && isInt u.port && u.port >= s.basePort && u.port < s.basePort + portSpan)
        "${at}.port = ${toString u.port} lies in ${toString s.basePort}-${toString (s.basePort + portSpan - 1)}, the range basePort keeps for automatic ports; choose a port outside it, or leave port unset"
      ++ optional (u.uidBase != null && !(isInt u.uidBase && mod u.uidBase idRangeSize == 0 && u.uidBase >= 16 * idRangeSize && u.uidBase <= 4294967296 - 2 * idRangeSize))
        "${at}.uidBase = ${toJSON u.uidBase} must be a multiple of ${toString idRangeSize} from ${toString (16 * idRangeSize)} to ${toString (4294967296 - 2 * idRangeSize)}"
      ++ optional (passwordFiles == [ ])
        "${at}: no password file; set ${at}.hashedPasswordFile (an argon2 hash, e.g. written by `csm passwd ${name}`) or ${at}.passwordFile"
      ++ optional (length passwordFiles > 1)
        "${at}: both hashedPasswordFile and passwordFile are set; keep only one"
      ++ filter (p: p != null) (map (f: pathProblem "${at}.${f}" u.${f}) passwordFiles)
      ++ sizeProblem "memoryLimit" u.memoryLimit
      ++ sizeProblem "memorySoftLimit" u.memorySoftLimit
      ++ optional (hard != null && hard < minMemory)
        "${at}.memoryLimit = ${toJSON u.memoryLimit} is below 512m, which code-server needs to start"
      ++ optional (hard != null && soft != null && soft > hard)
        "${at}.memorySoftLimit (${toJSON u.memorySoftLimit}) is above memoryLimit (${toJSON u.memoryLimit}); the soft limit must not exceed the hard one"
      ++ optional (!isCpuCount u.cpuLimit)
        "${at}.cpuLimit = ${toJSON u.cpuLimit} is not a positive number of CPUs like \"1.5\""
      ++ optional (!(isInt u.pidsLimit && u.pidsLimit >= 64))
        "${at}.pidsLimit = ${toJSON u.pidsLimit} must be a whole number of at least 64"
      ++ (if !isList u.environmentFiles then [ "${at}.environmentFiles must be a list of paths" ]
          else filter (p: p != null) (map (pathProblem "${at}.environmentFiles entry") u.environmentFiles))
      ++ (if !isList u.extraVolumes then [ "${at}.extraVolumes must be a list of \"/host/path:/container/path[:options]\"" ]
          else concatLists (map (v:
            let m = if isString v then match "/[^:]*:/[^:]*(:([^:]*))?" v else null;
                options = if m == null || elemAt m 1 == null then [ ] else filter isString (builtins.split "," (elemAt m 1));
                bad = filter (o: !elem o allowedVolumeOptions) options;
            in if m == null then [ "${at}.extraVolumes entry ${toJSON v} is not \"/host/path:/container/path[:options]\"" ]
               else optional (bad != [ ])
                 "${at}.extraVolumes entry ${toJSON v} has the option${optionalString (length bad > 1) "s"} ${showList (map toJSON bad)}; only ${showList allowedVolumeOptions} are allowed (e.g. \"U\" would make podman chown the host directory)")
            u.extraVolumes));

  # Two users on one value: name both and say which to change.
  clashes = what: valueOf: fix:
    let
      pairs = concatLists (genList (i: genList (j: { a = elemAt names i; b = elemAt names (i + 1 + j); })
        (length names - i - 1)) (length names));
    in map (p: "users.${p.a} and users.${p.b} both get ${what} ${toString (valueOf p.a)}; ${fix p.b}")
      (filter (p: valueOf p.a == valueOf p.b) pairs);

  validUsers = filter (n: userProblems n == [ ]) names;
  # A key, token or password written into the opencode settings would land in the Nix
  # store and in every container's config. A value passes only if, apart from
  # "{env:VAR}" / "{file:PATH}" references, it holds nothing but an auth scheme
  # ("Bearer {env:VAR}"): under a name that means a secret (…apiKey(s), …token,
  # …secret, …password, privateKey, credentials, Authorization, Cookie) or anything
  # below one, wherever it sits; and, in every string, a URL's secret-named query
  # parameter (?key=, ?api_key=, ?token=) or the password of its user:password@.
  normalizedKeyName = replaceStrings
    [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" "_" "-" ]
    [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" "" "" ];
  secretName = n: match ".*(apikey|accesskey|secretkey|privatekey|token|secret|password|passwd|authorization|credential|cookie)s?" (normalizedKeyName n) != null;
  # The text of v outside its references; "" for "{env:A}{env:B}".
  literalPart = v: concatStringsSep "" (filter isString (builtins.split "\\{(env|file):[^}]+}" v));
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
        filter (p: p != null) (map (match "([^=]*)=(.*)") (filter isString (builtins.split "&" (head query))));
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
  writtenOutSecretProblems = writtenOutSecrets "opencode.provider" false opencode.provider
    ++ writtenOutSecrets "opencode.extraConfig" false opencode.extraConfig;

  errors =
    unknownKeys "" knownTop settings
    ++ optional (!(settings ? domain)) "domain is not set; give the domain whose subdomains the users get, e.g. \"code.example.org\""
    ++ optional (settings ? domain && !isHostname s.domain)
      "domain = ${toJSON s.domain} is not a hostname; use lowercase DNS labels separated by dots, e.g. \"code.example.org\""
    ++ optional (!basePortOk)
      "basePort = ${toJSON s.basePort} must leave room for ${toString portSpan} automatic ports between 1024 and 65535 (at most ${toString (65536 - portSpan)})"
    ++ optional (directoryProblem "workspaceBase" s.workspaceBase != null) (directoryProblem "workspaceBase" s.workspaceBase)
    ++ optional (directoryProblem "runtimeDir" s.runtimeDir != null) (directoryProblem "runtimeDir" s.runtimeDir)
    ++ optional (isNormalPath s.workspaceBase && isNormalPath s.runtimeDir
                 && (isBelow s.workspaceBase s.runtimeDir || isBelow s.runtimeDir s.workspaceBase))
      "runtimeDir (${toJSON s.runtimeDir}) and workspaceBase (${toJSON s.workspaceBase}) overlap; the composed secrets must not lie among the workspaces: keep them apart"
    ++ optional (!(isDnsLabel s.namePrefix && stringLength s.namePrefix <= 40))
      "namePrefix = ${toJSON s.namePrefix} must be 1 to 40 lowercase letters, digits and dashes, not starting or ending with a dash, e.g. \"code-server\""
    ++ optional (!(isString s.image && s.image != "")) "image must be an image reference like \"localhost/code-server-multi:latest\""
    ++ optional (names == [ ]) "users is empty; add at least one user, e.g. users.alice.hashedPasswordFile = \"/run/secrets/alice\""
    ++ concatLists (map userProblems names)
    ++ (if basePortOk && all (n: validUsers != [ ] && elem n validUsers) names then
          clashes "port" portOf (b: "set users.${b}.port to a free port outside the automatic range")
          ++ clashes "host id range starting at" idBaseOf (b: "set users.${b}.uidBase to a free multiple of ${toString idRangeSize}")
        else [ ])
    ++ unknownKeys "opencode." (attrNames defaults.opencode) opencode
    ++ optional (!isBool opencode.allowFreeProvider) "opencode.allowFreeProvider must be true or false"
    ++ writtenOutSecretProblems
    ++ unknownKeys "acme." (attrNames defaults.acme) acme
    ++ optional (acme.enable && !isString acme.dnsProvider)
      "acme.dnsProvider is not set; a wildcard certificate for *.${toString (s.domain or "")} needs a DNS-01 provider (a lego name such as \"cloudflare\")"
    ++ optional (acme.enable) (pathProblem "acme.credentialsFile" acme.credentialsFile)
    ++ unknownKeys "tls." (attrNames defaults.tls) tls
    ++ optional (tlsFiles && (tls.certificateFile == null || tls.keyFile == null))
      "tls: certificateFile and keyFile go together; set both (the certificate chain and its private key)"
    ++ filter (p: p != null) (map (f: if tls.${f} == null then null else pathProblem "tls.${f}" tls.${f}) [ "certificateFile" "keyFile" ])
    ++ optional (tls.useACMEHost != null && !(isString tls.useACMEHost && tls.useACMEHost != ""))
      "tls.useACMEHost = ${toJSON tls.useACMEHost} must name a certificate of security.acme.certs on this host"
    ++ optional (tls.useACMEHost != null && tlsFiles)
      "tls: useACMEHost and certificateFile/keyFile are two ways to give the certificate; keep one"
    ++ optional (acme.enable && (tlsFiles || tls.useACMEHost != null))
      "acme.enable gets its own certificate for *.${toString (s.domain or "")}, and tls names an existing one; keep one of them (unset tls, or set acme.enable = false)"
    ++ unknownKeys "backup." (attrNames defaults.backup) backup
    ++ optional (backup.enable && !isAbsolutePath backup.target) "backup.target = ${toJSON backup.target} must be an absolute path"
    ++ optional (backup.enable && isAbsolutePath backup.target && plainCharsProblem "backup.target" backup.target != null)
      (plainCharsProblem "backup.target" backup.target)
    ++ optional (!(isInt backup.keep && backup.keep >= 1)) "backup.keep = ${toJSON backup.keep} must be a whole number of at least 1"
    ++ unknownKeys "landingPage." (attrNames defaults.landingPage) landingPage
    ++ optional (!isAttrs s.vscodeSettings) "vscodeSettings must be an attribute set of VS Code settings, e.g. { \"editor.fontSize\" = 16; }";

  realErrors = filter (e: e != null) (errors ++ idleErrors);


  # ---- idle stop and wake on visit -------------------------------------------
  # A user's container stops after idleStopAfter with no open VS Code connection and
  # its CPU under idle.cpuThreshold; the next request for it meets the waker (csm
  # idle, on loopback) through nginx's error_page, which starts it and shows a page
  # until code-server answers. csm/idle/ reads everything below.
  durationUnits = { s = 1; m = 60; h = 3600; d = 86400; };
  minIdleSeconds = 10;
  parseDuration = x:
    if isInt x then (if x > 0 then x else null)
    else if !isString x then null
    else let m = match "([1-9][0-9]*) ?([smhd])" x;
         in if m == null then null else builtins.fromJSON (elemAt m 0) * durationUnits.${elemAt m 1};
  idleSettingOf = name: let v = users.${name}.idleStopAfter; in if v == "default" then s.idleStopAfter else v;
  idleSecondsOf = name: let v = idleSettingOf name; in if v == null then null else parseDuration v;
  durationProblem = field: v: optional (v != null && (parseDuration v == null || parseDuration v < minIdleSeconds))
    "${field} = ${toJSON v} is not a duration of at least ${toString minIdleSeconds} seconds; write it like \"30m\", \"1h\" or 3600 (seconds), or null to keep the container always on";
  idleUsers = filter (n: idleSecondsOf n != null) names;
  wakerPort = s.basePort - 1;   # just below the automatic range, never a user's

  idleErrors =
    durationProblem "idleStopAfter" s.idleStopAfter
    ++ concatLists (map (n: if users.${n}.idleStopAfter == "default" then [ ]
         else durationProblem "users.${n}.idleStopAfter" users.${n}.idleStopAfter) names)
    ++ concatLists (map (n: optional (isInt s.basePort && users.${n}.port == wakerPort)
         "users.${n}.port = ${toString wakerPort} is the port of the waker (basePort - 1); choose another port") names);

  idleLimits = {
    cpuThreshold = 0.05;          # CPUs, averaged over each check: more is work running
    retryAfterSeconds = 2;        # Retry-After of the starting page (its refresh without JavaScript)
    healthTimeoutSeconds = 300;   # a start not healthy by then has failed (NixOS loads the image first)
    retryFailedAfterSeconds = 900; # a failed start is not tried again before this
    startsPerClient = { count = 5; seconds = 600; };   # one address waking containers
    startsPerUser = { count = 4; seconds = 3600; };    # one container woken
    pageRate = "120r/m";          # nginx: requests per address that reach the waker
    pageBurst = 60;
    readyPath = "/_csm/ready";    # where the starting page asks whether code-server answers yet
    readyHoldSeconds = 10;        # the waker holds that question until it does, at most this long
  };
  minIdle = foldl' (a: n: let v = idleSecondsOf n; in if a == null || v < a then v else a) null idleUsers;
  checkInterval = if minIdle == null then 30 else
    let i = minIdle / 10; in if i < 2 then 2 else if i > 30 then 30 else i;

  idlePage = title: body: concatStringsSep "" [
    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    "<title>${title}</title>"
    "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style>"
    "</head><body><h1>${title}</h1>${body}</body></html>"
  ];
  idlePages = name: let who = escapeHtml name; in {
    # Asks the waker (idle.readyPath) whether code-server answers yet; the waker holds
    # the question until it does or a few seconds pass, so the page reloads the moment
    # it can, into code-server's login page or workbench at the same address. Asking
    # the address itself could hang: while podman starts a container, conmon holds its
    # port and a connection made then is never answered. Any other page of the waker's
    # (failed, stopped, too many starts) is shown by reloading; no answer from the waker
    # (nginx's 429, a network hiccup) means asking again later, each time twice as late.
    # Without JavaScript, a refresh.
    starting = idlePage "Starting ${who}&#8217;s workspace&#8230;" (concatStringsSep "" [
      "<noscript><meta http-equiv='refresh' content='${toString idleLimits.retryAfterSeconds}'></noscript>"
      "<p>It was stopped because nobody used it for a while. Your files are all there.</p>"
      "<p>This page opens the workspace by itself as soon as it is ready, usually within a few seconds.</p>"
      "<script>(function ask(w){var c=new AbortController(),t=setTimeout(function(){c.abort()},${toString (idleLimits.readyHoldSeconds * 2000)});"
      "function later(){clearTimeout(t);setTimeout(function(){ask(Math.min(2*w,16000))},w)}"
      "fetch('${idleLimits.readyPath}',{cache:'no-store',signal:c.signal}).then(function(r){var s=r.headers.get('X-CSM-Wake');"
      "if(s==='starting'){clearTimeout(t);setTimeout(function(){ask(1000)},500)}else if(s){location.reload()}else{later()}})"
      ".catch(later)})(1000)</script>" ]);
    failed = idlePage "${who}&#8217;s workspace could not start" (concatStringsSep "" [
      "<p>It was asked to start and did not become ready. Your files are safe.</p>"
      "<p>Tell the person who gave you your address; it will not be tried again for a while.</p>" ]);
    stopped = idlePage "${who}&#8217;s workspace is not running" (concatStringsSep "" [
      "<p>It was not stopped for being idle, so it is not started from here. Your files are safe.</p>"
      "<p>Ask the person who runs this server to start it again.</p>" ]);
    rateLimited = idlePage "Too many starts" (concatStringsSep "" [
      "<p>Workspaces were started too often from your network or for this address.</p>"
      "<p>Wait a few minutes, then reload this page.</p>" ]);
  };

  idleUserPlan = name: u:
    let
      on = elem name idleUsers;
      wake = [ "error_page 502 = @csm_wake;" ];   # refused upstream: the container is not running
      toWaker = {
        proxyPass = "http://127.0.0.1:${toString wakerPort}";
        config = [
          "limit_req zone=csm_wake burst=${toString idleLimits.pageBurst} nodelay;"
          "limit_req_status 429;"
          "proxy_set_header X-CSM-User ${name};"
          "proxy_set_header X-Real-IP $remote_addr;"
          "proxy_set_header Host $host;"
          "proxy_pass_request_body off;"
          "proxy_set_header Content-Length \"\";"
        ];
      };
    in u // {
      idle = { stopAfterSeconds = idleSecondsOf name; pages = idlePages name; };
      nginx = if !on then u.nginx else u.nginx // {
        locations = mapAttrs (_: l: if l.proxyPass == null then l else l // { config = l.config ++ wake; }) u.nginx.locations
          // {
            "@csm_wake" = toWaker;
            # Always the waker, running container or not: it knows when code-server answers.
            "= ${idleLimits.readyPath}" = toWaker;
          };
      };
    };

  withIdle = plan: plan // {
    users = mapAttrs idleUserPlan plan.users;
    idle = idleLimits // {
      enable = idleUsers != [ ];
      users = idleUsers;
      waker = { address = "127.0.0.1"; port = wakerPort; };
      stateDir = "${s.runtimeDir}/idle";   # who was stopped for being idle, and when
      checkIntervalSeconds = checkInterval;
    };
    nginx = plan.nginx // {
      httpConfig = plan.nginx.httpConfig ++ optional (idleUsers != [ ])
        "limit_req_zone $binary_remote_addr zone=csm_wake:10m rate=${idleLimits.pageRate};";
    };
  };

  # ---- the plan ------------------------------------------------------------------
  proxyHeaders = [
    "proxy_http_version 1.1;"
    "proxy_set_header Host $host;"
    # code-server compares Origin with X-Forwarded-Host: $http_host keeps the
    # port the browser used, so WebSockets work on any port.
    "proxy_set_header X-Forwarded-Host $http_host;"
    "proxy_set_header X-Forwarded-Proto $scheme;"
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    "proxy_set_header X-Real-IP $remote_addr;"
    # code-server trusts Forwarded over X-Forwarded-Host: never pass a client's.
    "proxy_set_header Forwarded \"\";"
    "proxy_set_header Upgrade $http_upgrade;"
    "proxy_set_header Connection $csm_connection_upgrade;"
    "proxy_read_timeout ${nginxLimits.proxyTimeout};"
    "proxy_send_timeout ${nginxLimits.proxyTimeout};"
  ];

  # Served by nginx itself (in a quoted string: no double quotes, no $).
  rateLimitedHtml = concatStringsSep "" [
    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Too many login attempts</title>"
    "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style>"
    "</head><body><h1>Too many login attempts</h1>"
    "<p>Logins from your network are rate limited, and there were too many in the last minute.</p>"
    "<p>Wait one minute, then go back to the login page and try again.</p>"
    "<p>If it keeps happening, tell the person who gave you your address.</p></body></html>"
  ];

  opencodeConfig = {
    "$schema" = "https://opencode.ai/config.json";
    autoupdate = false;
    share = "disabled";
  }
  // optionalAttrs (opencode.provider != { }) { inherit (opencode) provider; }
  // optionalAttrs (opencode.model != null) { inherit (opencode) model; }
  // optionalAttrs (!opencode.allowFreeProvider) { disabled_providers = [ "opencode" ]; }
  // opencode.extraConfig;

  # code-server's user data dir (settings, state) is in the home, so it persists.
  vscodeDataDir = ".local/share/code-server";
  vscodeUserDir = "${vscodeDataDir}/User";
  vscodeUserDirs = [ ".local" ".local/share" vscodeDataDir vscodeUserDir ];

  userPlan = name:
    let
      u = users.${name};
      port = portOf name;
      idBase = idBaseOf name;
      hostUid = hostUidOf name;
      hostGid = idBase + containerGid;
      userDir = "${s.workspaceBase}/${name}";
      hostname = "${name}.${s.domain}";
      upstream = "http://127.0.0.1:${toString port}";
      memory = parseSize u.memoryLimit;
      memorySoft = parseSize u.memorySoftLimit;
      cpus = numberText u.cpuLimit;
      passwordVariable = if u.hashedPasswordFile != null then "HASHED_PASSWORD" else "PASSWORD";
      envFile = "${s.runtimeDir}/${name}.env";
      network = "${s.namePrefix}-${name}";
      owned = path: { inherit path; uid = hostUid; gid = hostGid; mode = "0700"; };
    in {
      inherit name hostname port upstream;
      ids = { base = idBase; size = idRangeSize; inherit hostUid hostGid containerUid; };
      directories = [
        # Traversable, not listable: the container's mapped root must reach the mounts.
        { path = userDir; uid = 0; gid = 0; mode = "0711"; }
        (owned "${userDir}/workspace")
        (owned "${userDir}/config")
        (owned "${userDir}/config/project")   # mount point of the workspace inside the home
      ] ++ map (d: owned "${userDir}/config/${d}") vscodeUserDirs;
      # Written only where missing, so a person's own changes are kept.
      seedFiles = [
        ((owned "${userDir}/config/${vscodeUserDir}/settings.json") // { mode = "0600"; content = toJSON vscodeSettings; })
      ];
      # Composed at each start from the files named here (by systemd or the runner),
      # readable by root only, and handed to podman as an --env-file.
      secrets = {
        inherit envFile;
        fromFiles = [ { variable = passwordVariable; file = if u.hashedPasswordFile != null then u.hashedPasswordFile else u.passwordFile; } ];
      };
      limits = { memoryBytes = memory; memorySoftBytes = memorySoft; inherit cpus; pids = u.pidsLimit; };
      # Created before the container (`podman network create` + createOptions),
      # removed with it.
      network = {
        name = network;
        createOptions = map (o: "--opt=${o}") networkOptions ++ [ "--disable-dns" ];
      };
      container = {
        name = "${s.namePrefix}-${name}";
        inherit (s) image;
        ports = [ "127.0.0.1:${toString port}:${toString containerPort}" ];
        volumes = [ "${userDir}/config:${home}" "${userDir}/workspace:${project}" ] ++ u.extraVolumes;
        environment = { OPENCODE_CONFIG_CONTENT = toJSON opencodeConfig; };
        environmentFiles = [ envFile ] ++ u.environmentFiles;
        user = "${toString containerUid}:${toString containerGid}";
        cmd = [
          "code-server"
          "--bind-addr" "0.0.0.0:${toString containerPort}"
          "--auth" "password"
          "--disable-telemetry"
          "--disable-update-check"
          "--disable-workspace-trust"
          "--disable-getting-started-override"
          "--welcome-text" "Log in to ${name}'s workspace with the password you were given."
          # Outside the bind-mounted home, so extensions baked into the image stay visible.
          "--extensions-dir" extensionsDir
          "--user-data-dir" "${home}/${vscodeDataDir}"
          project
        ];
        inherit healthCheck;
        # The runner's `podman run --restart`; NixOS restarts through systemd.
        restart = restartPolicy;
        extraOptions = [
          "--network=${network}"
          "--hostname=${name}"
          "--label=io.code-server-multi.user=${name}"
          "--memory=${toString memory}"
          "--memory-reservation=${toString memorySoft}"
          "--memory-swap=${toString memory}"   # equal to --memory: no escape into swap
          "--cpus=${cpus}"
          "--pids-limit=${toString u.pidsLimit}"
          "--cap-drop=all"
          "--security-opt=no-new-privileges"
          "--uidmap=0:${toString idBase}:${toString idRangeSize}"
          "--gidmap=0:${toString idBase}:${toString idRangeSize}"
          "--health-cmd=${toJSON healthCheck}"  # JSON: exec form, no shell in between
          "--health-interval=30s"
          "--health-timeout=5s"
          "--health-retries=3"
          "--health-start-period=60s"
        ];
      };
      nginx = {
        serverName = hostname;
        config = [ "client_max_body_size ${nginxLimits.clientMaxBodySize};" ];
        locations = {
          "/" = { proxyPass = upstream; config = proxyHeaders; };
          # Password submissions (POST) meet nginx's per-address flood guard before
          # code-server's own per-address limit on wrong passwords.
          "= /login" = {
            proxyPass = upstream;
            config = [
              "limit_req zone=csm_login burst=${toString nginxLimits.loginBurst} nodelay;"
              "limit_req_status 429;"
              "error_page 429 @csm_rate_limited;"
            ] ++ proxyHeaders;
          };
          # What a person sees when limited: what happened and what to do.
          "@csm_rate_limited" = {
            proxyPass = null;
            config = [ "default_type text/html;" "return 429 \"${rateLimitedHtml}\";" ];
          };
        };
      };
    };

  plan = {
    version = 1;
    inherit (s) domain workspaceBase image runtimeDir basePort namePrefix;
    users = listToAttrs (map (name: { inherit name; value = userPlan name; }) names);
    opencode = { config = opencodeConfig; };
    directories = [ { path = s.workspaceBase; uid = 0; gid = 0; mode = "0711"; } ];
    nginx = {
      httpConfig = [
        # Only POSTs have a key: requests with an empty key are not counted.
        "map $request_method $csm_login_key { POST $binary_remote_addr; default ''; }"
        "limit_req_zone $csm_login_key zone=csm_login:10m rate=${nginxLimits.loginRate};"
        "map $http_upgrade $csm_connection_upgrade { default upgrade; '' close; }"
      ];
      tlsConfig = [
        "add_header Strict-Transport-Security \"max-age=31536000\" always;"
        # The session cookie opens the workspace: only over TLS, never to scripts.
        "proxy_cookie_flags ${sessionCookie} secure httponly;"
      ];
      # Unknown subdomains and unknown Host headers: the landing page, 404, no upstream.
      defaultServer = {
        landingHtml = ''
          <!doctype html>
          <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
          <title>${escapeHtml landingPage.title}</title>
          <style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head>
          <body><h1>${escapeHtml landingPage.title}</h1><p>${escapeHtml landingPage.message}</p></body></html>
        '';
        config = [ "error_page 404 /index.html;" ];
        locations = {
          "/" = [ "return 404;" ];
          "= /index.html" = [ "internal;" ];
        };
      };
    };
    acme = {
      inherit (acme) enable dnsProvider credentialsFile email;
      certName = s.domain;
      domain = s.domain;
      extraDomainNames = [ "*.${s.domain}" ];
    };
    # How nginx serves HTTPS on NixOS: acme's certificate, the host's own
    # security.acme cert, or certificate files. The runner keeps its local CA.
    tls = {
      enable = acme.enable || tlsFiles || tls.useACMEHost != null;
      useACMEHost = if acme.enable then plan.acme.certName else tls.useACMEHost;
      inherit (tls) certificateFile keyFile;
    };
    backup = {
      inherit (backup) enable target schedule keep;
      paths = map (n: "${s.workspaceBase}/${n}") names;
    };
  };
in
if realErrors == [ ] then withIdle plan
else throw ("code-server-multi: invalid settings:\n" + concatStringsSep "\n" (map (e: "  - ${e}") realErrors))

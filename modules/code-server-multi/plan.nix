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
  # The default of a dotted setting name ("gate.stateDir"), to show as an example.
  defaultOf = field: foldl' (a: k: a.${k}) defaults (filter isString (builtins.split "\\." field));
  directoryProblem = field: p:
    if !isAbsolutePath p then "${field} = ${toJSON p} must be an absolute path"
    else if !isNormalPath p then "${field} = ${toJSON p} must be a plain absolute path (no \".\", \"..\", \"//\" or trailing slash)"
    else if plainCharsProblem field p != null then plainCharsProblem field p
    else if elem p sharedDirs then "${field} = ${toJSON p} is a shared system directory${optionalString (elem p [ "/tmp" "/var/tmp" "/dev/shm" "/run/lock" ]) " that everyone may write to"}; use a directory of its own, e.g. ${toJSON (defaultOf field)}"
    else if any (d: isBelow d p) systemTrees then "${field} = ${toJSON p} lies in a system directory (${head (filter (d: isBelow d p) systemTrees)}); use a directory of its own, e.g. ${toJSON (defaultOf field)}"
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
  idRangeSize = 65536;      # host uids/gids given to one user's container
  idBaseStart = 268435456;  # 2^28: far above any host account
  idSlots = 4096;
  # What the image and the plan must agree on, written once for both image recipes.
  contract = builtins.fromJSON (builtins.readFile ../../image/contract.json);
  # code-server listens only on a Unix socket in a host directory that only root and
  # nginx's group can traverse (see socketOf): no TCP port anywhere on the host.
  socketDirInContainer = "/run/code-server-multi";
  socketInContainer = "${socketDirInContainer}/code-server.sock";
  healthCheck = [ "curl" "-fsS" "-o" "/dev/null" "--unix-socket" socketInContainer "http://localhost${contract.healthPath}" ];
  containerUid = contract.uid;  # the image's user
  containerGid = contract.gid;
  inherit (contract) home project extensionsDir;
  minMemory = 536870912;    # 512 MiB: code-server does not start in less
  minDisk = 1073741824;     # 1 GiB: a home (VS Code's state, opencode) and room to work

  nginxLimits = {
    clientMaxBodySize = "128m";  # VS Code uploads of 100 MB, with room for encoding
    webSocketTimeout = "3600s";  # a quiet terminal's WebSocket stays open an hour; nothing else waits that long
    # A coarse flood guard on password submissions (POST to the gate's login path)
    # per client address; loading the login page is never counted. A class behind
    # one router (one address) logs in at once: 30 at a time, then one every 2 s.
    # Wrong passwords are held to a few a minute per address by the gate.
    loginRate = "30r/m";
    loginBurst = 30;
    connectionsPerAddress = 256;   # a class of 30 behind one address, each with a few tabs
    wallRate = "10r/s";          # login pages shown in place of a page, per address
    wallBurst = 60;              # a class of 30 opening their addresses at once
  };

  # Each user's container on a network of its own: podman's `isolate` option drops
  # traffic between isolated networks, so no container reaches another's (by
  # address; with DNS off, not by name either). The internet and the host's
  # public side stay reachable through the bridge. podman picks a free subnet
  # (no fixed one here could be known not to clash with the host's own networks).
  networkOptions = [ "isolate=true" ];
  # On every container of the project: how the runner finds them all (departed users' too).
  userLabel = "io.code-server-multi.user";
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
  knownTop = attrNames (removeAttrs defaults [ "user" ]) ++ [ "domain" "users" ];
  # Settings that existed once: say why they went instead of "not a setting".
  noPorts = "code-server now listens on a Unix socket behind the login gate, so no user has a port; remove it";
  removedSettings = { top = { basePort = noPorts; }; user = { port = noPorts; }; };
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

  unknownKeys = where: known: as: unknownOrRemoved where known { } as;
  unknownOrRemoved = where: known: removed: as:
    map (k: if removed ? ${k} then "${where}${k} is no longer a setting: ${removed.${k}}"
            else "${where}${k} is not a setting (known: ${showList known}); check its spelling")
      (filter (k: !elem k known) (attrNames as));

  # ---- per-user derived values ----------------------------------------------
  idBaseOf = name: let u = users.${name}; in
    if u.uidBase == null then idBaseStart + mod (nameHash name) idSlots * idRangeSize else u.uidBase;
  hostUidOf = name: idBaseOf name + containerUid;

  # ---- validation --------------------------------------------------------------
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
      unknownOrRemoved "${at}." (attrNames defaults.user) removedSettings.user usersIn.${name}
      ++ optional (!isDnsLabel name)
        "${at}: the name ${toJSON name} is not a DNS label; use 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash"
      ++ optional (elem name reservedNames)
        "${at}: the name ${toJSON name} is reserved (${showList reservedNames}); choose another name"
      ++ optional (u.uidBase != null && !(isInt u.uidBase && mod u.uidBase idRangeSize == 0 && u.uidBase >= 16 * idRangeSize && u.uidBase <= 4294967296 - 2 * idRangeSize))
        "${at}.uidBase = ${toJSON u.uidBase} must be a multiple of ${toString idRangeSize} from ${toString (16 * idRangeSize)} to ${toString (4294967296 - 2 * idRangeSize)}"
      ++ optional (passwordFiles == [ ])
        "${at}: no password file; set ${at}.hashedPasswordFile (an argon2 hash, e.g. written by `csm passwd ${name}`) or ${at}.passwordFile"
      ++ optional (length passwordFiles > 1)
        "${at}: both hashedPasswordFile and passwordFile are set; keep only one"
      ++ filter (p: p != null) (map (f: pathProblem "${at}.${f}" u.${f}) passwordFiles)
      # Each is one systemd LoadCredential= line of the gate's unit.
      ++ map (f: "${at}.${f} = ${toJSON u.${f}} holds a line break or another control character; give the file a plain path")
           (filter (f: isString u.${f} && match "[^[:cntrl:]]*" u.${f} == null) passwordFiles)
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
    unknownOrRemoved "" knownTop removedSettings.top settings
    ++ optional (!(settings ? domain)) "domain is not set; give the domain whose subdomains the users get, e.g. \"code.example.org\""
    ++ optional (settings ? domain && !isHostname s.domain)
      "domain = ${toJSON s.domain} is not a hostname; use lowercase DNS labels separated by dots, e.g. \"code.example.org\""
    ++ optional (directoryProblem "workspaceBase" s.workspaceBase != null) (directoryProblem "workspaceBase" s.workspaceBase)
    ++ optional (directoryProblem "runtimeDir" s.runtimeDir != null) (directoryProblem "runtimeDir" s.runtimeDir)
    ++ optional (isString s.runtimeDir && stringLength s.runtimeDir > maxRuntimeDir)
      "runtimeDir = ${toJSON s.runtimeDir} is ${toString (stringLength s.runtimeDir)} characters long; the sockets below it must fit in 107 bytes, so use at most ${toString maxRuntimeDir}, e.g. \"/run/code-server-multi\""
    ++ optional (isNormalPath s.workspaceBase && isNormalPath s.runtimeDir
                 && (isBelow s.workspaceBase s.runtimeDir || isBelow s.runtimeDir s.workspaceBase))
      "runtimeDir (${toJSON s.runtimeDir}) and workspaceBase (${toJSON s.workspaceBase}) overlap; the composed secrets must not lie among the workspaces: keep them apart"
    ++ optional (!(isDnsLabel s.namePrefix && stringLength s.namePrefix <= 40))
      "namePrefix = ${toJSON s.namePrefix} must be 1 to 40 lowercase letters, digits and dashes, not starting or ending with a dash, e.g. \"code-server\""
    ++ optional (!(isString s.image && s.image != "")) "image must be an image reference like \"localhost/code-server-multi:latest\""
    ++ optional (names == [ ]) "users is empty; add at least one user, e.g. users.alice.hashedPasswordFile = \"/run/secrets/alice\""
    ++ concatLists (map userProblems names)
    ++ (if all (n: validUsers != [ ] && elem n validUsers) names then
          clashes "host id range starting at" idBaseOf (b: "set users.${b}.uidBase to a free multiple of ${toString idRangeSize}")
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

  realErrors = filter (e: e != null) (errors ++ idleErrors ++ diskErrors ++ gateErrors);


  # ---- idle stop and wake after login ----------------------------------------
  # A user's container stops after idleStopAfter with no open VS Code connection and
  # its CPU under idle.cpuThreshold (csm idle, as root); the next request of someone
  # logged in meets nginx's 502 (the socket refuses), and the gate asks the root
  # side to start it and shows the starting page until code-server answers.
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

  # ---- disk quota ----------------------------------------------------------------
  # Each user's directory is the mount point of a disk image of their own (ext4 in a
  # sparse file, csm/runner/disks.py): what they write counts against it only.
  diskSettingOf = name: let v = users.${name}.diskQuota; in if v == "default" then s.diskQuota else v;
  diskProblem = field: v: optional (v != null && (parseSize v == null || parseSize v < minDisk))
    "${field} = ${toJSON v} is not a size of at least 1G; write it like \"20G\" or \"500g\", or null for no limit";
  diskErrors =
    diskProblem "diskQuota" s.diskQuota
    ++ concatLists (map (n: if users.${n}.diskQuota == "default" then [ ]
         else diskProblem "users.${n}.diskQuota" users.${n}.diskQuota) names);

  idleErrors =
    durationProblem "idleStopAfter" s.idleStopAfter
    ++ concatLists (map (n: if users.${n}.idleStopAfter == "default" then [ ]
         else durationProblem "users.${n}.idleStopAfter" users.${n}.idleStopAfter) names);

  idleLimits = {
    cpuThreshold = 0.05;          # CPUs, averaged over each check: more is work running
    healthTimeoutSeconds = 300;   # a start not healthy by then has failed (NixOS loads the image first)
    retryFailedAfterSeconds = 900; # a failed start is not tried again before this
  };
  minIdle = foldl' (a: n: let v = idleSecondsOf n; in if a == null || v < a then v else a) null idleUsers;
  checkInterval = if minIdle == null then 30 else
    let i = minIdle / 10; in if i < 2 then 2 else if i > 30 then 30 else i;

  # ---- the gate: the one front door (csm/gate) ---------------------------------
  # nginx asks it about every request to a user's host (auth_request); it serves the
  # login, keeps the sessions, and wakes a stopped workspace for its logged-in owner.
  # It runs as its own account and reaches the root side (csm idle) only through the
  # control socket's verbs.
  gateSettings = withDefaults "gate";
  gatePaths = rec {
    prefix = "/_csm/";
    login = "${prefix}login";
    logout = "${prefix}logout";
    auth = "${prefix}auth";
    wake = "${prefix}wake";
    ready = "${prefix}ready";
    health = "${prefix}health";
  };
  gateDir = "${s.runtimeDir}/gate";
  # Each user's socket as nginx reaches it, named by a hash of the name: a socket's path
  # must fit in 107 bytes (sun_path), and a user name alone may take 63.
  socketLinks = "${s.runtimeDir}/sockets";
  socketOf = name: "${socketLinks}/${substring 0 16 (hashString "sha256" name)}.sock";
  maxRuntimeDir = 107 - stringLength (socketOf "x") + stringLength s.runtimeDir;
  controlDir = "${s.runtimeDir}/control";
  gate = {
    unit = "code-server-multi-gate.service";   # NixOS
    user = "csm-gate";            # the gate's own account (and group)
    proxyGroup = "csm-proxy";     # nginx's workers are in it: only they reach the sockets
    directory = gateDir;
    socket = "${gateDir}/gate.sock";
    control = { directory = controlDir; socket = "${controlDir}/control.sock"; };
    inherit (gateSettings) stateDir ipv6Prefix;
    paths = gatePaths;
    # Host-only: __Host- needs Secure, so plain http (the demo) gets a plain name.
    cookie = { http = "csm-session"; https = "__Host-csm-session"; };
    sessionIdleSeconds = parseDuration gateSettings.sessionIdleTimeout;
    sessionLifetimeSeconds = parseDuration gateSettings.sessionLifetime;
    # Wrong passwords per client address (IPv6: per ipv6Prefix), per user: 2 a minute
    # plus 12 an hour, charged before the hash is checked and given back when right.
    wrongPasswords = { perMinute = 2; perHour = 12; };
    verificationsAtOnce = 2;      # argon2 takes 64 MiB each: more wait as "busy"
    retryAfterSeconds = 2;        # the starting page's refresh without JavaScript
    readyHoldSeconds = 10;        # the starting page's question is held this long at most
    heldAtOnce = 64;              # starting-page questions held at once
  };
  gateErrors =
    unknownKeys "gate." (attrNames defaults.gate) gateSettings
    ++ optional (parseDuration gateSettings.sessionIdleTimeout == null)
      "gate.sessionIdleTimeout = ${toJSON gateSettings.sessionIdleTimeout} is not a duration; write it like \"7d\" or \"12h\""
    ++ optional (parseDuration gateSettings.sessionLifetime == null)
      "gate.sessionLifetime = ${toJSON gateSettings.sessionLifetime} is not a duration; write it like \"30d\""
    ++ optional (!(isInt gateSettings.ipv6Prefix && gateSettings.ipv6Prefix >= 32 && gateSettings.ipv6Prefix <= 128))
      "gate.ipv6Prefix = ${toJSON gateSettings.ipv6Prefix} must be a prefix length from 32 to 128 (64: one allowance per /64)"
    ++ optional (directoryProblem "gate.stateDir" gateSettings.stateDir != null) (directoryProblem "gate.stateDir" gateSettings.stateDir)
    ++ optional (isNormalPath gateSettings.stateDir && isNormalPath s.workspaceBase
                 && (isBelow s.workspaceBase gateSettings.stateDir || isBelow gateSettings.stateDir s.workspaceBase))
      "gate.stateDir (${toJSON gateSettings.stateDir}) and workspaceBase (${toJSON s.workspaceBase}) overlap; keep the sessions out of the workspaces (and their backups)";

  # Pages: one template (pages/page.html) and a body per page; the gate fills the
  # @...@ fields that depend on the request, escaped.
  page = title: body: replaceStrings [ "@TITLE@" "@BODY@" ] [ title body ] (builtins.readFile ./pages/page.html);
  pageFile = file: builtins.readFile (./pages + "/${file}");
  gatePages = name: let who = escapeHtml name; in {
    login = page "Log in to ${who}&#8217;s workspace" (replaceStrings [ "@WHO@" "@LOGIN_PATH@" ] [ who gatePaths.login ] (pageFile "login.html"));
    logout = page "Log out" (replaceStrings [ "@WHO@" "@LOGOUT_PATH@" ] [ who gatePaths.logout ] (pageFile "logout.html"));
    starting = page "Starting ${who}&#8217;s workspace&#8230;" (replaceStrings [ "@RETRY_AFTER@" "@HOLD_MS@" "@READY_PATH@" ]
      [ (toString gate.retryAfterSeconds) (toString (gate.readyHoldSeconds * 2000)) gatePaths.ready ] (pageFile "starting.html"));
    failed = page "${who}&#8217;s workspace could not start" (pageFile "failed.html");
    stopped = page "${who}&#8217;s workspace is not running" (pageFile "stopped.html");
  };

  # ---- nginx ----------------------------------------------------------------------
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
  ];
  # What nginx sends the gate: which user's host this is (fixed per server, never
  # the client's), the client's address and scheme, and the address asked for.
  gateHeaders = name: [
    "proxy_http_version 1.1;"
    "proxy_set_header Connection \"\";"   # keep-alive to the gate
    "proxy_set_header Host $host;"
    "proxy_set_header X-CSM-User ${name};"
    "proxy_set_header X-Real-IP $remote_addr;"
    "proxy_set_header X-Forwarded-Proto $scheme;"
    "proxy_set_header X-Original-URI $request_uri;"
  ];
  # The gate decides from the headers alone; an upload meant for code-server stays out.
  noBody = [ "proxy_pass_request_body off;" "proxy_set_header Content-Length \"\";" ];
  gateBodyLimit = "client_max_body_size 16k;";   # a login form: nginx never holds a big body for the gate
  toGate = name: extra: { proxyPass = "http://csm_gate"; config = extra ++ gateHeaders name; };
  # Every request to code-server first passes the gate (auth_request): no session,
  # the login page in its place (401); the socket refusing (a stopped container),
  # the gate's wake; a WebSocket upgrade, the only request allowed to stay open an hour.
  behindGate = [
    "auth_request ${gatePaths.auth};"
    "error_page 401 = @csm_login;"
    "error_page 502 = @csm_wake;"
    # No session cookie at all: the login page at once, without asking the gate twice.
    "if ($csm_has_session = 0) { return 401; }"
  ];
  # The sum each host name needs in nginx's server name hash (ngx_hash_init: a
  # pointer, the name and 2 bytes aligned to 8, and the bucket's end pointer).
  hostNameNeed = n: 16 + 8 * ((stringLength n + 2 + 7) / 8);
  longestNeed = foldl' (a: n: let x = hostNameNeed n; in if x > a then x else a) 0
    ([ "*.${s.domain}" ] ++ map (n: "${n}.${s.domain}") names);
  # Served by nginx itself, so in a quoted string: the pages hold no double quote or $.
  rateLimitedHtml = replaceStrings [ "\n" ] [ "" ] (page "Too many login attempts" (pageFile "rate-limited.html"));
  workerConnections = 1024 + 2 * nginxLimits.connectionsPerAddress * length names;
  bucketSize = foldl' (a: b: if a >= longestNeed then a else b) 64 [ 128 256 512 ];

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
      idBase = idBaseOf name;
      hostUid = hostUidOf name;
      hostGid = idBase + containerGid;
      userDir = "${s.workspaceBase}/${name}";
      hostname = "${name}.${s.domain}";
      # Only root and nginx's group traverse socketGuard. Inside it: the directory the
      # container's code-server creates its socket in (mounted at socketDirInContainer,
      # the user's own: they could put anything there, a link to another's socket too),
      # Root's hard link to that socket, made once root has checked it is one
      # (csm/sockets.py), lies in socketLinks; nginx and root connect only to the link.
      socketGuard = "${s.runtimeDir}/users/${name}";
      socketDir = "${socketGuard}/code-server";
      socketSource = "${socketDir}/code-server.sock";
      socket = socketOf name;
      codeServer = "http://unix:${socket}:";
      memory = parseSize u.memoryLimit;
      memorySoft = parseSize u.memorySoftLimit;
      cpus = numberText u.cpuLimit;
      network = "${s.namePrefix}-${name}";
      owned = path: { inherit path; uid = hostUid; gid = hostGid; mode = "0700"; };
    in {
      inherit name hostname socket socketSource;
      ids = { base = idBase; size = idRangeSize; inherit hostUid hostGid containerUid; };
      directories = [
        # Traversable, not listable: the container's mapped root must reach the mounts.
        { path = userDir; uid = 0; gid = 0; mode = "0711"; }
        (owned "${userDir}/workspace")
        (owned "${userDir}/config")
        (owned "${userDir}/config/project")   # mount point of the workspace inside the home
      ] ++ map (d: owned "${userDir}/config/${d}") vscodeUserDirs ++ [
        { path = socketGuard; uid = 0; gid = gate.proxyGroup; mode = "0710"; }
        ((owned socketDir) // { mode = "0711"; })
      ];
      # Written only where missing, so a person's own changes are kept.
      seedFiles = [
        ((owned "${userDir}/config/${vscodeUserDir}/settings.json") // { mode = "0600"; content = toJSON vscodeSettings; })
      ];
      # Read by the gate only (NixOS: a systemd credential; the runner: a copy the
      # gate's account may read); the container never receives it. A plain password
      # is hashed when loaded.
      password = if u.hashedPasswordFile != null then { file = u.hashedPasswordFile; hashed = true; }
                 else { file = u.passwordFile; hashed = false; };
      pages = gatePages name;
      idle = { stopAfterSeconds = idleSecondsOf name; };
      # quotaBytes null: no quota, the directory is a plain one on the host's disk
      # (unless the image exists from an earlier quota: it stays in use).
      disk = {
        quotaBytes = let q = diskSettingOf name; in if q == null then null else parseSize q;
        image = "${s.workspaceBase}/.disks/${name}.ext4";
        mountPoint = userDir;
      };
      limits = { memoryBytes = memory; memorySoftBytes = memorySoft; inherit cpus; pids = u.pidsLimit; };
      # Created before the container (`podman network create` + createOptions),
      # removed with it.
      network = {
        name = network;
        unit = "podman-network-${network}.service";   # NixOS: the oneshot that creates it
        createOptions = map (o: "--opt=${o}") networkOptions ++ [ "--disable-dns" ];
      };
      container = {
        name = "${s.namePrefix}-${name}";
        # NixOS: the unit virtualisation.oci-containers makes for it (podman backend).
        unit = "podman-${s.namePrefix}-${name}.service";
        inherit (s) image;
        ports = [ ];
        volumes = [ "${userDir}/config:${home}" "${userDir}/workspace:${project}" "${socketDir}:${socketDirInContainer}" ] ++ u.extraVolumes;
        # CSM_LOGOUT_PATH: where the image's "Log out" item sends the browser (the gate's page).
        environment = { OPENCODE_CONFIG_CONTENT = toJSON opencodeConfig; CSM_LOGOUT_PATH = gatePaths.logout; };
        environmentFiles = u.environmentFiles;
        user = "${toString containerUid}:${toString containerGid}";
        cmd = [
          "code-server"
          # The gate in front checks passwords; only root and nginx reach the socket.
          "--socket" socketInContainer
          "--socket-mode" "666"
          "--auth" "none"
          "--disable-telemetry"
          "--disable-update-check"
          "--disable-workspace-trust"
          "--disable-getting-started-override"
          # Outside the bind-mounted home, so extensions baked into the image stay visible.
          "--extensions-dir" extensionsDir
          "--user-data-dir" "${home}/${vscodeDataDir}"
          project
        ];
        inherit healthCheck;
        socket = socketInContainer;   # where the idle check counts connections
        inherit (contract) healthPath;
        healthTimeoutSeconds = 180;   # a (re)started container's time to pass it
        labels = { ${userLabel} = name; };
        # The runner's `podman run --restart`; NixOS restarts through systemd.
        restart = restartPolicy;
        extraOptions = [
          "--network=${network}"
          "--hostname=${name}"
          "--label=${userLabel}=${name}"
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
        config = [
          "client_max_body_size ${nginxLimits.clientMaxBodySize};"
          "limit_conn csm_conn ${toString nginxLimits.connectionsPerAddress};"
          "absolute_redirect off;"
        ];
        locations = {
          "/" = {
            proxyPass = codeServer;
            # Only upgrades go on to @csm_websocket, which may stay open an hour.
            config = behindGate ++ [ "error_page 418 = @csm_websocket;" "if ($http_upgrade) { return 418; }" ] ++ proxyHeaders;
          };
          "@csm_websocket" = {
            proxyPass = codeServer;
            config = behindGate ++ proxyHeaders ++ [
              "proxy_read_timeout ${nginxLimits.webSocketTimeout};"
              "proxy_send_timeout ${nginxLimits.webSocketTimeout};"
            ];
          };
          # The gate's own pages and questions; it answers 404 to any path it does not know.
          "^~ ${gatePaths.prefix}" = toGate name [ gateBodyLimit ];
          "= ${gatePaths.auth}" = toGate name ([ "internal;" ] ++ noBody);
          # Password submissions (POST) meet nginx's per-address flood guard before
          # the gate's own per-address limit on wrong passwords.
          "= ${gatePaths.login}" = toGate name [
            gateBodyLimit
            "limit_req zone=csm_login burst=${toString nginxLimits.loginBurst} nodelay;"
            "limit_req_status 429;"
            "error_page 429 @csm_rate_limited;"
          ];
          # No session: the login page in place of what was asked for (HTTP 401).
          # A flood of requests without a session meets nginx's per-address limit here,
          # before the gate: a person loads one login page, a script hundreds.
          "@csm_login" = toGate name ([
            "rewrite ^ ${gatePaths.login}?wall? break;"   # the trailing ? drops the page's own query
            "limit_req zone=csm_wall burst=${toString nginxLimits.wallBurst} nodelay;"
            "limit_req_status 429;"
          ] ++ noBody);
          # A logged-in request met a stopped container: the gate starts it.
          "@csm_wake" = toGate name ([ "rewrite ^ ${gatePaths.wake}? break;" ] ++ noBody);
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
    inherit (s) domain workspaceBase image runtimeDir namePrefix;
    inherit gate;
    labels = { user = userLabel; };
    users = listToAttrs (map (name: { inherit name; value = userPlan name; }) names);
    opencode = { config = opencodeConfig; };
    directories = [
      { path = s.workspaceBase; uid = 0; gid = 0; mode = "0711"; }
      # Traversable, not listable: nginx and the gate reach their sockets below it;
      # the env files in it are root's own (0600).
      { path = s.runtimeDir; uid = 0; gid = 0; mode = "0711"; }
      { path = "${s.runtimeDir}/users"; uid = 0; gid = 0; mode = "0711"; }
      { path = socketLinks; uid = 0; gid = gate.proxyGroup; mode = "0710"; }
      { path = gate.directory; uid = gate.user; gid = gate.proxyGroup; mode = "0750"; }
      { path = gate.control.directory; uid = 0; gid = gate.user; mode = "0750"; }
      { path = gate.stateDir; uid = gate.user; gid = gate.user; mode = "0700"; }
    ];
    nginx = {
      httpConfig = [
        # Only POSTs have a key: requests with an empty key are not counted.
        "map $request_method $csm_login_key { POST $binary_remote_addr; default ''; }"
        "limit_req_zone $csm_login_key zone=csm_login:10m rate=${nginxLimits.loginRate};"
        "map $http_upgrade $csm_connection_upgrade { default upgrade; '' close; }"
        "limit_conn_zone $binary_remote_addr zone=csm_conn:10m;"
        "limit_req_zone $binary_remote_addr zone=csm_wall:10m rate=${nginxLimits.wallRate};"
        # Whether a request carries a session cookie at all (the gate decides if it is valid).
        "map $http_cookie $csm_has_session { default 0; \"~(^|;\\s*)(${gate.cookie.http}|${gate.cookie.https})=[^;]\" 1; }"
        "upstream csm_gate { server unix:${gate.socket}; keepalive 64; }"
      ];
      serverNamesHashBucketSize = bucketSize;
      # Two per proxied request (client and upstream), for a class behind one address.
      workerConnections = workerConnections;
      # nginx's main context: a worker may hold both ends of each of its connections.
      # nginx's main context: a worker per core (nginx's own default is one), and
      # room for both ends of each of its connections plus logs and listeners.
      mainConfig = [ "worker_processes auto;" "worker_rlimit_nofile ${toString (2 * workerConnections)};" ];
      tlsConfig = [
        "add_header Strict-Transport-Security \"max-age=31536000\" always;"
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
    idle = idleLimits // {
      enable = idleUsers != [ ];
      users = idleUsers;
      stateDir = "${s.runtimeDir}/idle";   # who was stopped for being idle, and when
      checkIntervalSeconds = checkInterval;
    };
  };
in
if realErrors == [ ] then plan
else throw ("code-server-multi: invalid settings:\n" + concatStringsSep "\n" (map (e: "  - ${e}") realErrors))

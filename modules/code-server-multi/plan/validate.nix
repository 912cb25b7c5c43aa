# Everything wrong with the settings, one message each, naming the field and what
# to do; [ ] when there is nothing. plan.nix throws them all at once.
{ lib, defaults, settings, cfg, gate }:
let
  inherit (builtins)
    all any attrNames concatLists elem elemAt filter foldl' genList head isAttrs isBool isInt isList isString
    length match stringLength toJSON typeOf;
  inherit (lib)
    isAbsolutePath isBelow isCpuCount isDnsLabel isHostname isNormalPath mod optional optionalString
    parseDuration parseSize showList splitOn;
  inherit (cfg) s users usersIn names opencode acme tls tlsFiles backup landingPage gateSettings idRangeSize idBaseOf;

  # ---- limits of the design ----------------------------------------------------
  reservedNames = [ "www" "mail" "smtp" "imap" "pop" "pop3" "ftp" "mx" "ns" "ns1" "ns2" "webmail"
                    "autoconfig" "autodiscover" "wpad" "localhost" "admin" "api" "static" ];
  minMemory = 536870912;    # 512 MiB: code-server does not start in less
  minDisk = 1073741824;     # 1 GiB: a home (VS Code's state, opencode) and room to work
  minIdleSeconds = 10;
  allowedVolumeOptions = [ "ro" "rw" "z" "Z" ];
  # Directories that must never be workspaceBase or runtimeDir: the root, system
  # trees (refused with everything below them) and shared or world-writable ones.
  systemTrees = [ "/etc" "/usr" "/bin" "/sbin" "/lib" "/lib32" "/lib64" "/libx32" "/boot" "/proc" "/sys" "/dev" "/nix" ];
  sharedDirs = [ "/" "/var" "/var/lib" "/var/cache" "/var/log" "/var/tmp" "/var/spool" "/var/mail" "/run" "/run/user"
                 "/run/lock" "/tmp" "/root" "/home" "/srv" "/opt" "/mnt" "/media" "/dev/shm" ];
  # The longest runtimeDir whose sockets (gate.socketOf) still fit in sun_path's 107 bytes.
  maxRuntimeDir = 107 - stringLength (gate.socketOf "x") + stringLength s.runtimeDir;

  # ---- names -------------------------------------------------------------------
  # Settings that existed once: say why they went instead of "not a setting".
  noPorts = "code-server now listens on a Unix socket behind the login gate, so no user has a port; remove it";
  removedSettings = { top = { basePort = noPorts; }; user = { port = noPorts; }; };
  unknownKeys = where: known: as: unknownOrRemoved where known { } as;
  unknownOrRemoved = where: known: removed: as:
    map (k: if removed ? ${k} then "${where}${k} is no longer a setting: ${removed.${k}}"
            else "${where}${k} is not a setting (known: ${showList known}); check its spelling")
      (filter (k: !elem k known) (attrNames as));

  # ---- paths -------------------------------------------------------------------
  # The default of a dotted setting name ("gate.stateDir"), to show as an example.
  defaultOf = field: foldl' (a: k: a.${k}) defaults (splitOn "\\." field);
  directoryProblem = field: p:
    if !isAbsolutePath p then "${field} = ${toJSON p} must be an absolute path"
    else if !isNormalPath p then "${field} = ${toJSON p} must be a plain absolute path (no \".\", \"..\", \"//\" or trailing slash)"
    else if plainCharsProblem field p != null then plainCharsProblem field p
    else if elem p sharedDirs then "${field} = ${toJSON p} is a shared system directory${optionalString (elem p [ "/tmp" "/var/tmp" "/dev/shm" "/run/lock" ]) " that everyone may write to"}; use a directory of its own, e.g. ${toJSON (defaultOf field)}"
    else if any (d: isBelow d p) systemTrees then "${field} = ${toJSON p} lies in a system directory (${head (filter (d: isBelow d p) systemTrees)}); use a directory of its own, e.g. ${toJSON (defaultOf field)}"
    else null;
  # Host directories are written unquoted into tmpfiles rules, podman's volume
  # arguments and systemd lines: only characters none of them treats specially.
  plainCharsProblem = field: p:
    if match "[A-Za-z0-9._/+-]+" p != null then null
    else "${field} = ${toJSON p} may hold only letters, digits, \".\", \"_\", \"+\", \"-\" and \"/\" (no spaces, \"%\" or \":\"): it is written into tmpfiles rules, volume arguments and systemd units as it is";
  pathProblem = field: p:
    if typeOf p == "path" then "${field} is a Nix path (${toString p}), which would copy the file into the world-readable Nix store; give it as a string, e.g. \"/run/secrets/...\""
    else if !isAbsolutePath p then "${field} must be an absolute path, got ${toJSON p}"
    else null;
  # Two directories that must not lie one inside the other.
  overlap = a: b: isNormalPath a && isNormalPath b && (isBelow a b || isBelow b a);

  # ---- durations and sizes -----------------------------------------------------
  durationProblem = field: v: optional (v != null && (parseDuration v == null || parseDuration v < minIdleSeconds))
    "${field} = ${toJSON v} is not a duration of at least ${toString minIdleSeconds} seconds; write it like \"30m\", \"1h\" or 3600 (seconds), or null to keep the container always on";
  diskProblem = field: v: optional (v != null && (parseSize v == null || parseSize v < minDisk))
    "${field} = ${toJSON v} is not a size of at least 1G; write it like \"20G\" or \"500g\", or null for no limit";
  # A top-level setting, and each user's own value unless it is "default".
  perUser = field: problem: problem field s.${field}
    ++ concatLists (map (n: if users.${n}.${field} == "default" then [ ]
         else problem "users.${n}.${field}" users.${n}.${field}) names);

  # ---- users -------------------------------------------------------------------
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
          else concatLists (map (volumeProblems at) u.extraVolumes));
  volumeProblems = at: v:
    let m = if isString v then match "/[^:]*:/[^:]*(:([^:]*))?" v else null;
        options = if m == null || elemAt m 1 == null then [ ] else splitOn "," (elemAt m 1);
        bad = filter (o: !elem o allowedVolumeOptions) options;
    in if m == null then [ "${at}.extraVolumes entry ${toJSON v} is not \"/host/path:/container/path[:options]\"" ]
       else optional (bad != [ ])
         "${at}.extraVolumes entry ${toJSON v} has the option${optionalString (length bad > 1) "s"} ${showList (map toJSON bad)}; only ${showList allowedVolumeOptions} are allowed (e.g. \"U\" would make podman chown the host directory)";

  # Two users on one value: name both and say which to change.
  clashes = what: valueOf: fix:
    let
      pairs = concatLists (genList (i: genList (j: { a = elemAt names i; b = elemAt names (i + 1 + j); })
        (length names - i - 1)) (length names));
    in map (p: "users.${p.a} and users.${p.b} both get ${what} ${toString (valueOf p.a)}; ${fix p.b}")
      (filter (p: valueOf p.a == valueOf p.b) pairs);
  validUsers = filter (n: userProblems n == [ ]) names;

  # ---- everything, in the order the message lists it ---------------------------
  errors =
    unknownOrRemoved "" (import ../setting-names.nix) removedSettings.top settings
    ++ optional (!(settings ? domain)) "domain is not set; give the domain whose subdomains the users get, e.g. \"code.example.org\""
    ++ optional (settings ? domain && !isHostname s.domain)
      "domain = ${toJSON s.domain} is not a hostname; use lowercase DNS labels separated by dots, e.g. \"code.example.org\""
    ++ optional (directoryProblem "workspaceBase" s.workspaceBase != null) (directoryProblem "workspaceBase" s.workspaceBase)
    ++ optional (directoryProblem "runtimeDir" s.runtimeDir != null) (directoryProblem "runtimeDir" s.runtimeDir)
    ++ optional (isString s.runtimeDir && stringLength s.runtimeDir > maxRuntimeDir)
      "runtimeDir = ${toJSON s.runtimeDir} is ${toString (stringLength s.runtimeDir)} characters long; the sockets below it must fit in 107 bytes, so use at most ${toString maxRuntimeDir}, e.g. \"/run/code-server-multi\""
    ++ optional (overlap s.workspaceBase s.runtimeDir)
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
    ++ import ./secrets.nix { inherit lib opencode; }
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
    ++ optional (!isAttrs s.vscodeSettings) "vscodeSettings must be an attribute set of VS Code settings, e.g. { \"editor.fontSize\" = 16; }"
    ++ perUser "idleStopAfter" durationProblem
    ++ perUser "diskQuota" diskProblem
    ++ unknownKeys "gate." (attrNames defaults.gate) gateSettings
    ++ optional (parseDuration gateSettings.sessionIdleTimeout == null)
      "gate.sessionIdleTimeout = ${toJSON gateSettings.sessionIdleTimeout} is not a duration; write it like \"7d\" or \"12h\""
    ++ optional (parseDuration gateSettings.sessionLifetime == null)
      "gate.sessionLifetime = ${toJSON gateSettings.sessionLifetime} is not a duration; write it like \"30d\""
    ++ optional (!(isInt gateSettings.ipv6Prefix && gateSettings.ipv6Prefix >= 32 && gateSettings.ipv6Prefix <= 128))
      "gate.ipv6Prefix = ${toJSON gateSettings.ipv6Prefix} must be a prefix length from 32 to 128 (64: one allowance per /64)"
    ++ optional (directoryProblem "gate.stateDir" gateSettings.stateDir != null) (directoryProblem "gate.stateDir" gateSettings.stateDir)
    ++ optional (overlap gateSettings.stateDir s.workspaceBase)
      "gate.stateDir (${toJSON gateSettings.stateDir}) and workspaceBase (${toJSON s.workspaceBase}) overlap; keep the sessions out of the workspaces (and their backups)";
in
filter (e: e != null) errors

# The plan: a pure function from settings to everything a deployment runs.
#
#   import ./plan.nix (import ../../examples/team.nix)
#
# Builtins only (no nixpkgs), so the NixOS module and the portable runner
# (`nix-instantiate --eval --strict --json`) compute the very same values.
# Defaults live in defaults.nix; the shape of the result is described in
# docs/plan.md. Invalid settings throw one message listing every problem, each
# naming the field and what to do.
#
# This file puts the plan together from its parts in plan/: lib.nix (helpers),
# settings.nix (settings with defaults, per-user values), validate.nix (and
# secrets.nix: the messages), gate.nix, idle.nix, pages.nix (pages/*.html through
# one template), containers.nix and nginx.nix.
settings:
let
  lib = import ./plan/lib.nix;
  defaults = import ./defaults.nix;
  cfg = import ./plan/settings.nix { inherit lib defaults settings; };
  gate = import ./plan/gate.nix { inherit lib cfg; };
  pages = import ./plan/pages.nix { inherit lib cfg gate; };
  containers = import ./plan/containers.nix { inherit lib cfg gate; };
  nginx = import ./plan/nginx.nix { inherit cfg gate pages; };
  idle = import ./plan/idle.nix { inherit cfg; };
  errors = import ./plan/validate.nix { inherit lib defaults settings cfg gate; };
  inherit (cfg) s names acme tls backup users;

  userPlan = name:
    let u = users.${name}; in
    containers.forUser name // {
      inherit name;
      hostname = "${name}.${s.domain}";
      socket = gate.socketOf name;
      # Read by the gate only (NixOS: a systemd credential; the runner: a copy the
      # gate's account may read); the container never receives it. A plain password
      # is hashed when loaded.
      password = if u.hashedPasswordFile != null then { file = u.hashedPasswordFile; hashed = true; }
                 else { file = u.passwordFile; hashed = false; };
      pages = pages.gate name;
      idle = { stopAfterSeconds = cfg.idleSecondsOf name; };
      nginx = nginx.forUser name;
    };

  plan = {
    version = 1;
    inherit (s) domain workspaceBase image runtimeDir namePrefix;
    gate = gate.plan;
    labels = { user = containers.userLabel; };
    users = builtins.listToAttrs (map (name: { inherit name; value = userPlan name; }) names);
    opencode = { config = containers.opencodeConfig; };
    directories = let g = gate.plan; in [
      { path = s.workspaceBase; uid = 0; gid = 0; mode = "0711"; }
      # Traversable, not listable: nginx and the gate reach their sockets below it;
      # the env files in it are root's own (0600).
      { path = s.runtimeDir; uid = 0; gid = 0; mode = "0711"; }
      { path = "${s.runtimeDir}/users"; uid = 0; gid = 0; mode = "0711"; }
      { path = gate.socketLinks; uid = 0; gid = g.proxyGroup; mode = "0710"; }
      { path = g.directory; uid = g.user; gid = g.proxyGroup; mode = "0750"; }
      { path = g.control.directory; uid = 0; gid = g.user; mode = "0750"; }
      { path = g.stateDir; uid = g.user; gid = g.user; mode = "0700"; }
    ];
    nginx = nginx.plan;
    acme = {
      inherit (acme) enable dnsProvider credentialsFile email;
      certName = s.domain;
      domain = s.domain;
      extraDomainNames = [ "*.${s.domain}" ];
    };
    # How nginx serves HTTPS on NixOS: acme's certificate, the host's own
    # security.acme cert, or certificate files. The runner keeps its local CA.
    tls = {
      enable = acme.enable || cfg.tlsFiles || tls.useACMEHost != null;
      useACMEHost = if acme.enable then plan.acme.certName else tls.useACMEHost;
      inherit (tls) certificateFile keyFile;
    };
    backup = {
      inherit (backup) enable target schedule keep;
      paths = map (n: "${s.workspaceBase}/${n}") names;
    };
    inherit idle;
  };
in
if errors == [ ] then plan
else throw ("code-server-multi: invalid settings:\n" + builtins.concatStringsSep "\n" (map (e: "  - ${e}") errors))

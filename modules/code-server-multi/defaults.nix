# Every default of code-server-multi, in one place: plan.nix applies them to plain
# settings, default.nix shows them as the NixOS options' defaults.
{
  workspaceBase = "/var/lib/vscode";
  # the image the recipes build (image/contract.json)
  image = let c = builtins.fromJSON (builtins.readFile ../../image/contract.json); in "${c.imageName}:${c.imageTag}";
  runtimeDir = "/run/code-server-multi";
  # Containers are <namePrefix>-<user>: a second deployment on the same host (a test
  # stack beside a person's demo) takes a prefix of its own.
  namePrefix = "code-server";
  # Stop a user's container after this long with no open VS Code connection and no
  # work running ("30m", "1h", or seconds); null keeps containers always on.
  idleStopAfter = "1h";
  # Each user's files (workspace and home) live on a disk of this size of their own
  # (a file under workspaceBase/.disks, formatted ext4 and mounted at their
  # directory), so nobody fills the host's disk for everyone. null: no limit.
  diskQuota = "20G";

  user = {
    uidBase = null;
    hashedPasswordFile = null;
    passwordFile = null;
    memoryLimit = "3g";
    memorySoftLimit = "2.5g";
    cpuLimit = "1.5";
    pidsLimit = 2048;
    environmentFiles = [ ];
    extraVolumes = [ ];
    idleStopAfter = "default";  # "default": the top-level idleStopAfter; null: always on
    diskQuota = "default";      # "default": the top-level diskQuota; null: no limit
  };

  opencode = {
    provider = { };
    model = null;
    allowFreeProvider = false;
    extraConfig = { };
  };

  acme = {
    enable = false;
    dnsProvider = null;
    credentialsFile = null;
    email = null;
  };

  # An existing certificate (instead of acme): files nginx reads, or a
  # security.acme.certs entry of the host (NixOS only; the runner uses its local CA).
  tls = {
    certificateFile = null;
    keyFile = null;
    useACMEHost = null;
  };

  backup = {
    enable = false;
    target = "/var/backup/code-server-multi";
    schedule = "daily";
    keep = 7;
  };

  # VS Code settings every new home starts with; a person's own changes win.
  # opencode is the AI here: VS Code's own chat needs an account nobody has.
  vscodeSettings = {
    "chat.disableAIFeatures" = true;
    "workbench.secondarySideBar.defaultVisibility" = "hidden";  # where that chat would open
  };

  # The login gate in front of every workspace (csm/gate).
  gate = {
    sessionIdleTimeout = "7d";   # a session unused this long ends
    sessionLifetime = "30d";     # and every session ends this long after its login
    ipv6Prefix = 64;             # one wrong-password allowance per IPv6 /64
    stateDir = "/var/lib/code-server-multi/gate";   # the sessions (hashed)
  };

  landingPage = {
    title = "Nothing here";
    message = "There is no workspace at this address. Check the name in the link you were given.";
  };
}

# services.code-server-multi: the options. Each concern beside this file maps the
# plan (plan.nix, computed once here) onto NixOS options; defaults come from
# defaults.nix so the plan and the options never disagree.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption types literalExpression;
  cfg = config.services.code-server-multi;
  defaults = import ./defaults.nix;
  noPorts = "code-server listens on a Unix socket behind the login gate now, so no user has a port; remove it.";

  # Secrets are paths given as strings: a Nix path would be copied into the store.
  secretPath = types.nullOr (types.strMatching "/.*");
  # "30m", "1h", "2d", or seconds; null: never (plan.nix validates the value).
  idleDuration = types.nullOr (types.either types.str types.ints.positive);
  diskSize = types.nullOr (types.either types.str types.ints.positive);

  userOptions = { name, ... }: {
    options = {
      # Gone: a configuration that still sets it gets the assertion below, not a silent no-op.
      port = mkOption { type = types.unspecified; default = null; visible = false; };
      uidBase = mkOption {
        type = types.nullOr types.ints.unsigned;
        default = defaults.user.uidBase;
        example = 1073741824;
        description = ''
          First host uid/gid of the 65536 mapped into this user's container. Unset: a
          stable range above 2^28 derived from the name. Set it only to resolve a clash
          the evaluation reports.
        '';
      };
      hashedPasswordFile = mkOption {
        type = secretPath;
        default = defaults.user.hashedPasswordFile;
        example = "/run/secrets/code-server/${name}";
        description = ''
          File holding the argon2 hash of the user's password (e.g. written by
          `csm passwd ${name}`, or a sops-nix secret). The login gate reads it as a
          systemd credential when it starts, so it may stay root's own (0600); never
          copied into the Nix store, never given to the container. `csm passwd --plan`
          restarts the gate; after changing the file any other way, restart
          code-server-multi-gate.service (sops-nix: `restartUnits`).
        '';
      };
      passwordFile = mkOption {
        type = secretPath;
        default = defaults.user.passwordFile;
        example = "/run/secrets/code-server/${name}-plain";
        description = "File holding the plain password, read by the login gate like hashedPasswordFile (and hashed in memory, never compared as text); prefer hashedPasswordFile. Exactly one of the two is required.";
      };
      memoryLimit = mkOption {
        type = types.str;
        default = defaults.user.memoryLimit;
        example = "6g";
        description = "Hard memory limit of the container; swap is capped at the same value (no escape into swap).";
      };
      memorySoftLimit = mkOption {
        type = types.str;
        default = defaults.user.memorySoftLimit;
        example = "5g";
        description = "Memory the kernel reclaims down to under pressure (podman --memory-reservation); at most memoryLimit.";
      };
      cpuLimit = mkOption {
        type = types.str;
        default = defaults.user.cpuLimit;
        example = "2";
        description = "CPUs the container may use (podman --cpus).";
      };
      pidsLimit = mkOption {
        type = types.ints.positive;
        default = defaults.user.pidsLimit;
        example = 4096;
        description = "Processes and threads the container may run at once; stops a fork bomb.";
      };
      environmentFiles = mkOption {
        type = types.listOf (types.strMatching "/.*");
        default = defaults.user.environmentFiles;
        example = [ "/run/secrets/code-server/anthropic.env" ];
        description = ''
          Env files (KEY=value lines) handed to the container at start, e.g. opencode's
          API keys (ANTHROPIC_API_KEY=...). Read by podman as root; never in the store.
        '';
      };
      extraVolumes = mkOption {
        type = types.listOf types.str;
        default = defaults.user.extraVolumes;
        example = [ "/srv/datasets:/home/coder/datasets:ro" ];
        description = "Extra bind mounts, \"/host/path:/container/path[:options]\".";
      };
      idleStopAfter = mkOption {
        type = idleDuration;
        default = defaults.user.idleStopAfter;
        example = null;
        description = ''
          This user's idleStopAfter: "default" takes the top-level one; null keeps the
          container always on (e.g. for someone whose jobs wait on the network).
        '';
      };
      diskQuota = mkOption {
        type = diskSize;
        default = defaults.user.diskQuota;
        example = "40G";
        description = ''
          This user's diskQuota: "default" takes the top-level one; null lets this user
          write until the host's disk is full.
        '';
      };
    };
  };

in
{
  imports = [ ./containers.nix ./nginx.nix ./acme.nix ./backup.nix ./directories.nix ./admin.nix ./idle.nix ./gate.nix
    (lib.mkRemovedOptionModule [ "services" "code-server-multi" "basePort" ] noPorts) ];

  options.services.code-server-multi = {
    enable = mkEnableOption "a browser VS Code with opencode for each user, each in a Podman container behind nginx";

    domain = mkOption {
      type = types.str;
      example = "code.example.org";
      description = "Each user is served at <name>.<domain>; point a wildcard DNS record *.<domain> at this host.";
    };
    workspaceBase = mkOption {
      type = types.str;
      default = defaults.workspaceBase;
      example = "/srv/code";
      description = "Where each user's workspace/ and config/ live on the host, one directory per user.";
    };
    image = mkOption {
      type = types.str;
      default = defaults.image;
      example = "registry.example.org/team/code-server:1";
      description = "Image every user's container runs. The flake's module sets it to the name and tag of imageStream.";
    };
    imageStream = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = literalExpression "the flake's packages.\${system}.image";
      description = "A dockerTools.streamLayeredImage loaded at container start, so the host needs no registry.";
    };
    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      defaultText = literalExpression "the flake's packages.\${system}.csm";
      description = "The csm admin CLI: installed on the host, it runs the login gate (`csm gate serve`), the idle checker, each container's preparation (`csm prepare`) and the backup service.";
    };
    gate = {
      sessionIdleTimeout = mkOption {
        type = types.either types.str types.ints.positive;
        default = defaults.gate.sessionIdleTimeout;
        example = "1d";
        description = "A login session unused this long ends (\"7d\", \"12h\", or seconds).";
      };
      sessionLifetime = mkOption {
        type = types.either types.str types.ints.positive;
        default = defaults.gate.sessionLifetime;
        example = "14d";
        description = "Every login session ends this long after the login, used or not.";
      };
      ipv6Prefix = mkOption {
        type = types.ints.between 32 128;
        default = defaults.gate.ipv6Prefix;
        description = "Wrong passwords are counted per client address; IPv6 addresses per prefix of this length (one household or office network).";
      };
      stateDir = mkOption {
        type = types.str;
        default = defaults.gate.stateDir;
        description = "Where the login gate keeps its sessions (only their hashes; a copy of it logs nobody in). Owned by the gate's account (csm-gate), the only place besides its socket directory it may write.";
      };
    };
    runtimeDir = mkOption {
      type = types.str;
      default = defaults.runtimeDir;
      example = "/run/code-server-multi";
      description = "Sockets of the login gate and of each user's code-server, and the files each container's start composes (on tmpfs).";
    };
    namePrefix = mkOption {
      type = types.str;
      default = defaults.namePrefix;
      example = "code";
      description = "Containers are named <namePrefix>-<user> (systemd units podman-<namePrefix>-<user>.service); change it only to run a second deployment on the same host.";
    };

    diskQuota = mkOption {
      type = diskSize;
      default = defaults.diskQuota;
      example = "40G";
      description = ''
        How much each user may store (workspace and home together), e.g. "20G" or "500g";
        at least "1G". Their files live on a disk of this size of their own: an ext4 file
        system in a sparse file under workspaceBase/.disks, mounted at their directory, so
        a full disk stops only them. Raising it takes effect at the container's next start
        (a switch restarts it); lowering it below what is in use is refused. null: no limit.
      '';
    };

    idleStopAfter = mkOption {
      type = idleDuration;
      default = defaults.idleStopAfter;
      example = "30m";
      description = ''
        Stop a user's container after this long with no open VS Code connection and its CPU
        nearly unused (so a running job is never stopped); the next visit starts it again
        behind a "Starting…" page. "30m", "1h", "2d" or seconds; null keeps every container
        always on. Files, history and VS Code state are kept; open terminals are not.
      '';
    };

    users = mkOption {
      type = types.attrsOf (types.submodule userOptions);
      default = { };
      example = literalExpression ''{ alice.hashedPasswordFile = "/run/secrets/code-server/alice"; }'';
      description = "One entry per person; the name is their subdomain (a DNS label, not reserved like www or mail).";
    };

    opencode = {
      provider = mkOption {
        type = types.attrsOf types.anything;
        default = defaults.opencode.provider;
        example = { anthropic.options.apiKey = "{env:ANTHROPIC_API_KEY}"; };
        description = "opencode providers, as in opencode.json's `provider`; keys as {env:VAR} only, given through users.<name>.environmentFiles.";
      };
      model = mkOption {
        type = types.nullOr types.str;
        default = defaults.opencode.model;
        example = "anthropic/claude-sonnet-4";
        description = "Default model, provider/model.";
      };
      allowFreeProvider = mkOption {
        type = types.bool;
        default = defaults.opencode.allowFreeProvider;
        example = true;
        description = "Keep opencode's free public provider enabled (it sends code to a third party without an API key of yours).";
      };
      extraConfig = mkOption {
        type = types.attrsOf types.anything;
        default = defaults.opencode.extraConfig;
        example = { theme = "github"; };
        description = "Anything else for opencode.json; merged last.";
      };
    };

    acme = {
      enable = mkOption {
        type = types.bool;
        default = defaults.acme.enable;
        example = true;
        description = "Get a wildcard certificate for *.<domain> by DNS-01 and serve every user over HTTPS.";
      };
      dnsProvider = mkOption {
        type = types.nullOr types.str;
        default = defaults.acme.dnsProvider;
        example = "cloudflare";
        description = "lego DNS provider name.";
      };
      credentialsFile = mkOption {
        type = secretPath;
        default = defaults.acme.credentialsFile;
        example = "/run/secrets/acme-cloudflare.env";
        description = "Env file with the DNS provider's credentials (lego variables).";
      };
      email = mkOption {
        type = types.nullOr types.str;
        default = defaults.acme.email;
        example = "admin@example.org";
        description = "Contact address for the ACME account; defaults to security.acme.defaults.email.";
      };
    };

    tls = {
      certificateFile = mkOption {
        type = secretPath;
        default = defaults.tls.certificateFile;
        example = "/var/lib/certs/code.example.org/fullchain.pem";
        description = ''
          For a host that already has a certificate covering *.<domain>: the certificate
          chain nginx serves (with keyFile). Instead of acme.enable; every user is then
          served over HTTPS.
        '';
      };
      keyFile = mkOption {
        type = secretPath;
        default = defaults.tls.keyFile;
        example = "/var/lib/certs/code.example.org/key.pem";
        description = "The private key of certificateFile, readable by nginx, given as a string (never copied into the Nix store).";
      };
      useACMEHost = mkOption {
        type = types.nullOr types.str;
        default = defaults.tls.useACMEHost;
        example = "example.org";
        description = ''
          For a host whose security.acme.certs already holds a certificate covering
          *.<domain>: its name. Instead of acme.enable and of certificateFile/keyFile.
        '';
      };
    };

    backup = {
      enable = mkOption {
        type = types.bool;
        default = defaults.backup.enable;
        example = true;
        description = "Archive every user's workspace and config on a schedule.";
      };
      target = mkOption {
        type = types.str;
        default = defaults.backup.target;
        example = "/mnt/backup/code";
        description = "Directory the archives go to.";
      };
      schedule = mkOption {
        type = types.str;
        default = defaults.backup.schedule;
        example = "*-*-* 03:00:00";
        description = "systemd OnCalendar expression.";
      };
      keep = mkOption {
        type = types.ints.positive;
        default = defaults.backup.keep;
        example = 30;
        description = "How many archives to keep; older ones are deleted.";
      };
    };

    vscodeSettings = mkOption {
      type = types.attrsOf types.anything;
      default = defaults.vscodeSettings;
      example = { "chat.disableAIFeatures" = true; "editor.fontSize" = 16; };
      description = "VS Code settings every new home starts with (written only where a person has no settings yet). The default hides VS Code's own AI chat, which needs an account: opencode is the AI here.";
    };

    landingPage = {
      title = mkOption {
        type = types.str;
        default = defaults.landingPage.title;
        example = "Nobody here";
        description = "Title of the page unknown subdomains get (with status 404).";
      };
      message = mkOption {
        type = types.str;
        default = defaults.landingPage.message;
        example = "Ask Dan for your link.";
        description = "Text of that page.";
      };
    };

    planFile = mkOption {
      type = types.str;
      internal = true;
      readOnly = true;
      default = "/etc/code-server-multi/plan.json";
      description = "Where the host keeps the plan for csm (written by admin.nix).";
    };

    plan = mkOption {
      type = types.raw;
      internal = true;
      readOnly = true;
      description = "The plan computed from these options (plan.nix); the concern modules map it.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = lib.mapAttrsToList (name: u: {
      assertion = u.port == null;
      message = "services.code-server-multi.users.${name}.port: ${noPorts}";
    }) cfg.users;
    # Every setting the plan takes (setting-names.nix) has an option of the same name.
    services.code-server-multi.plan = import ./plan.nix (lib.getAttrs (import ./setting-names.nix) cfg // {
      users = lib.mapAttrs (_: u: removeAttrs u [ "port" ]) cfg.users;
    });
  };
}

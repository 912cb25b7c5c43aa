# services.code-server-multi: the options. Each concern beside this file maps the
# plan (plan.nix, computed once here) onto NixOS options; defaults come from
# defaults.nix so the plan and the options never disagree.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption types literalExpression;
  cfg = config.services.code-server-multi;
  defaults = import ./defaults.nix;

  # Secrets are paths given as strings: a Nix path would be copied into the store.
  secretPath = types.nullOr (types.strMatching "/.*");
  # "30m", "1h", "2d", or seconds; null: never (plan.nix validates the value).
  idleDuration = types.nullOr (types.either types.str types.ints.positive);

  userOptions = { name, ... }: {
    options = {
      port = mkOption {
        type = types.nullOr types.port;
        default = defaults.user.port;
        example = 8090;
        description = ''
          Loopback port the container publishes. Unset: a stable port derived from the
          user's name, in basePort .. basePort+999. An explicit port must lie outside
          that range.
        '';
      };
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
          File holding the argon2 hash of the user's code-server password (e.g. written
          by `csm passwd ${name}`, or a sops-nix secret). Read at container start, never
          copied into the Nix store.
        '';
      };
      passwordFile = mkOption {
        type = secretPath;
        default = defaults.user.passwordFile;
        example = "/run/secrets/code-server/${name}-plain";
        description = "File holding the plain password; prefer hashedPasswordFile. Exactly one of the two is required.";
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
    };
  };

  option = type: default: example: description:
    mkOption { inherit type default example description; };
in
{
  imports = [ ./containers.nix ./nginx.nix ./acme.nix ./backup.nix ./directories.nix ./admin.nix ./idle.nix ];

  options.services.code-server-multi = {
    enable = mkEnableOption "a browser VS Code with opencode for each user, each in a Podman container behind nginx";

    domain = mkOption {
      type = types.str;
      example = "code.example.org";
      description = "Each user is served at <name>.<domain>; point a wildcard DNS record *.<domain> at this host.";
    };
    workspaceBase = option types.str defaults.workspaceBase "/srv/code"
      "Where each user's workspace/ and config/ live on the host, one directory per user.";
    image = option types.str defaults.image "localhost/code-server-multi:latest"
      "Image every user's container runs. The flake's module sets it to the name and tag of imageStream.";
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
      description = "The csm admin CLI: installed on the host and used by the backup service.";
    };
    basePort = option types.port defaults.basePort 20000
      "Start of the 1000 loopback ports from which users without an explicit port get theirs.";
    runtimeDir = option types.str defaults.runtimeDir "/run/code-server-multi"
      "Where each container's secret env file is composed at start (root only, on tmpfs).";
    namePrefix = option types.str defaults.namePrefix "code"
      "Containers are named <namePrefix>-<user> (systemd units podman-<namePrefix>-<user>.service); change it only to run a second deployment on the same host.";

    idleStopAfter = option idleDuration defaults.idleStopAfter "30m" ''
      Stop a user's container after this long with no open VS Code connection and its CPU
      nearly unused (so a running job is never stopped); the next visit starts it again
      behind a "Starting…" page. "30m", "1h", "2d" or seconds; null keeps every container
      always on. Files, history and VS Code state are kept; open terminals are not.
    '';

    users = mkOption {
      type = types.attrsOf (types.submodule userOptions);
      default = { };
      example = literalExpression ''{ alice.hashedPasswordFile = "/run/secrets/code-server/alice"; }'';
      description = "One entry per person; the name is their subdomain (a DNS label, not reserved like www or mail).";
    };

    opencode = {
      provider = option (types.attrsOf types.anything) defaults.opencode.provider
        { anthropic.options.apiKey = "{env:ANTHROPIC_API_KEY}"; }
        "opencode providers, as in opencode.json's `provider`; keys as {env:VAR} only, given through users.<name>.environmentFiles.";
      model = option (types.nullOr types.str) defaults.opencode.model "anthropic/claude-sonnet-4"
        "Default model, provider/model.";
      allowFreeProvider = option types.bool defaults.opencode.allowFreeProvider true
        "Keep opencode's free public provider enabled (it sends code to a third party without an API key of yours).";
      extraConfig = option (types.attrsOf types.anything) defaults.opencode.extraConfig { theme = "github"; }
        "Anything else for opencode.json; merged last.";
    };

    acme = {
      enable = option types.bool defaults.acme.enable true
        "Get a wildcard certificate for *.<domain> by DNS-01 and serve every user over HTTPS.";
      dnsProvider = option (types.nullOr types.str) defaults.acme.dnsProvider "cloudflare"
        "lego DNS provider name.";
      credentialsFile = option secretPath defaults.acme.credentialsFile "/run/secrets/acme-cloudflare.env"
        "Env file with the DNS provider's credentials (lego variables).";
      email = option (types.nullOr types.str) defaults.acme.email "admin@example.org"
        "Contact address for the ACME account; defaults to security.acme.defaults.email.";
    };

    backup = {
      enable = option types.bool defaults.backup.enable true
        "Archive every user's workspace and config on a schedule.";
      target = option types.str defaults.backup.target "/mnt/backup/code"
        "Directory the archives go to.";
      schedule = option types.str defaults.backup.schedule "*-*-* 03:00:00"
        "systemd OnCalendar expression.";
      keep = option types.ints.positive defaults.backup.keep 30
        "How many archives to keep; older ones are deleted.";
    };

    vscodeSettings = option (types.attrsOf types.anything) defaults.vscodeSettings
      { "chat.disableAIFeatures" = true; "editor.fontSize" = 16; }
      "VS Code settings every new home starts with (written only where a person has no settings yet). The default hides VS Code's own AI chat, which needs an account: opencode is the AI here.";

    landingPage = {
      title = option types.str defaults.landingPage.title "Nobody here"
        "Title of the page unknown subdomains get (with status 404).";
      message = option types.str defaults.landingPage.message "Ask Dan for your link."
        "Text of that page.";
    };

    plan = mkOption {
      type = types.raw;
      internal = true;
      readOnly = true;
      description = "The plan computed from these options (plan.nix); the concern modules map it.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.code-server-multi.plan = import ./plan.nix {
      inherit (cfg) domain workspaceBase image basePort runtimeDir namePrefix users opencode acme backup landingPage vscodeSettings idleStopAfter;
    };
  };
}

# A team of three on a public server, as an admin would describe it.
{
  domain = "code.example.org";
  users = {
    ada.hashedPasswordFile = "/run/secrets/code-server/ada";
    grace = {
      hashedPasswordFile = "/run/secrets/code-server/grace";
      # Grace trains small models: more room than the default 3g / 1.5 CPUs.
      memoryLimit = "6g";
      memorySoftLimit = "5g";
      cpuLimit = "2";
      pidsLimit = 4096;
      environmentFiles = [ "/run/secrets/code-server/openrouter.env" ];
    };
    linus = {
      passwordFile = "/run/secrets/code-server/linus";
      extraVolumes = [ "/srv/datasets:/home/coder/datasets:ro" ];
    };
  };
  opencode = {
    provider.openrouter.options.apiKey = "{env:OPENROUTER_API_KEY}";
    model = "openrouter/anthropic/claude-sonnet-4";
  };
  acme = {
    enable = true;
    dnsProvider = "cloudflare";
    credentialsFile = "/run/secrets/acme-cloudflare.env";
  };
  backup = {
    enable = true;
    target = "/var/backup/code-server-multi";
    keep = 14;
  };
}

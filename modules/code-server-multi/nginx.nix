# The plan's proxy onto services.nginx: one virtual host per user, and a default
# host that answers everything else with the landing page and 404. Every user's host
# asks the gate first (auth_request to the upstream csm_gate on its Unix socket,
# plan.nginx.httpConfig) and proxies to code-server's socket (plan.users.<n>.socket);
# nginx's user joins plan.gate.proxyGroup for both (gate.nix).
{ config, lib, pkgs, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg) plan;
  tls = plan.tls.enable;
  lines = lib.concatStringsSep "\n";
  certificate =
    if plan.tls.useACMEHost != null then { inherit (plan.tls) useACMEHost; }
    else if plan.tls.certificateFile != null then {
      sslCertificate = plan.tls.certificateFile;
      sslCertificateKey = plan.tls.keyFile;
    }
    else { };
  landing = pkgs.writeTextDir "index.html" plan.nginx.defaultServer.landingHtml;
in
lib.mkIf cfg.enable {
  services.nginx = {
    enable = true;
    appendHttpConfig = lines plan.nginx.httpConfig;
    # Sized by the plan from the longest host name: nixpkgs writes it into the http
    # block only when set (default null: nginx's 32/64, too small for long names).
    serverNamesHashBucketSize = plan.nginx.serverNamesHashBucketSize;
    # nixpkgs writes no events settings of its own, only this option's lines.
    eventsConfig = "worker_connections ${toString plan.nginx.workerConnections};";
    # nginx's main context from the plan (workers and their open-file limit): nixpkgs
    # sets no worker_processes and its unit no LimitNOFILE.
    appendConfig = lines plan.nginx.mainConfig;
    virtualHosts = lib.mapAttrs' (_: u: lib.nameValuePair u.nginx.serverName (certificate // {
      forceSSL = tls;
      extraConfig = lines (u.nginx.config ++ lib.optionals tls plan.nginx.tlsConfig);
      locations = lib.mapAttrs (_: l: {
        inherit (l) proxyPass;
        # The plan sets every proxy header itself; nixpkgs' defaults would send a
        # second X-Forwarded-Host without the port and break code-server's origin check.
        recommendedProxySettings = false;
        extraConfig = lines l.config;
      }) u.nginx.locations;
    })) plan.users // {
      # Override with lib.mkForce false if this host already has a default server.
      "*.${plan.domain}" = certificate // {
        default = lib.mkDefault true;
        addSSL = tls;
        root = "${landing}";
        extraConfig = lines plan.nginx.defaultServer.config;
        locations = lib.mapAttrs (_: l: { extraConfig = lines l; }) plan.nginx.defaultServer.locations;
      };
    };
  };
  networking.firewall.allowedTCPPorts = [ 80 ] ++ lib.optional tls 443;
}

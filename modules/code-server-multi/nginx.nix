# The plan's proxy onto services.nginx: one virtual host per user, and a default
# host that answers everything else with the landing page and 404.
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
    serverNamesHashBucketSize = plan.nginx.serverNamesHashBucketSize;
    eventsConfig = "worker_connections ${toString plan.nginx.workerConnections};";
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

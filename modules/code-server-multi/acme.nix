# A wildcard certificate for *.<domain> by DNS-01 (HTTP-01 cannot issue wildcards).
{ config, lib, ... }:
let
  cfg = config.services.code-server-multi;
  inherit (cfg.plan) acme;
in
lib.mkIf (cfg.enable && acme.enable) {
  security.acme.certs.${acme.certName} = {
    inherit (acme) domain extraDomainNames dnsProvider;
    environmentFile = acme.credentialsFile;
    group = config.services.nginx.group;
  } // lib.optionalAttrs (acme.email != null) { inherit (acme) email; };
}

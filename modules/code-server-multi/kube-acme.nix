# kube.nix's TLS: the plan's acme settings as one cert-manager Certificate for
# <domain> and *.<domain> by ACME DNS-01, or the plan's certificate files as a TLS
# Secret the admin creates. Each DNS provider's lego variable (the same
# credentialsFile the NixOS module gives lego) is the key cert-manager reads.
{ plan, meta }:
let
  inherit (builtins) attrNames concatStringsSep toJSON;
  acme = plan.acme;
  secretName = "${plan.namePrefix}-tls";
  issuer = "${plan.namePrefix}-acme";
  dnsSecret = "${plan.namePrefix}-acme-dns";
  letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory";
  solvers = {
    cloudflare.cloudflare.apiTokenSecretRef = { name = dnsSecret; key = "CLOUDFLARE_DNS_API_TOKEN"; };
    digitalocean.digitalocean.tokenSecretRef = { name = dnsSecret; key = "DO_AUTH_TOKEN"; };
  };
  known = concatStringsSep ", " (attrNames solvers);

  issuerObject = {
    apiVersion = "cert-manager.io/v1"; kind = "Issuer";
    metadata = meta issuer { };
    spec.acme = {
      server = letsEncrypt;
      privateKeySecretRef.name = "${issuer}-account";
      solvers = [ { dns01 = solvers.${acme.dnsProvider}; } ];
    } // (if acme.email == null then { } else { inherit (acme) email; });
  };
  certificate = {
    apiVersion = "cert-manager.io/v1"; kind = "Certificate";
    metadata = meta acme.certName { };
    spec = {
      inherit secretName;
      dnsNames = [ acme.domain ] ++ acme.extraDomainNames;
      issuerRef = { name = issuer; kind = "Issuer"; group = "cert-manager.io"; };
    };
  };
in
if acme.enable && !(solvers ? ${acme.dnsProvider}) then
  throw "code-server-multi: invalid settings:\n  - acme.dnsProvider = ${toJSON acme.dnsProvider} has no cert-manager DNS-01 solver in `csm kube render` (known: ${known}); use one of them, or issue the certificate yourself and give it as tls.certificateFile and tls.keyFile"
else if acme.enable then {
  objects = [ issuerObject certificate ];
  tlsSecret = secretName;
  secrets = [ {
    name = dnsSecret;
    what = "the DNS provider's API token for ACME DNS-01 (acme.credentialsFile, lego's variables)";
    fromEnvFile = acme.credentialsFile;
  } ];
  notes = [ ];
}
else if plan.tls.certificateFile != null then {
  objects = [ ];
  tlsSecret = secretName;
  secrets = [ {
    name = secretName;
    what = "the certificate and its key (tls.certificateFile, tls.keyFile)";
    tls = { cert = plan.tls.certificateFile; key = plan.tls.keyFile; };
  } ];
  notes = [ ];
}
else {
  objects = [ ];
  tlsSecret = null;
  secrets = [ ];
  notes = if plan.tls.useACMEHost == null then [ ] else [
    "tls.useACMEHost names a certificate of a NixOS host; on Kubernetes set acme (cert-manager) or tls.certificateFile/keyFile: the Ingresses are rendered without TLS"
  ];
}

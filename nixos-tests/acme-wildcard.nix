# A wildcard certificate for *.<domain> by DNS-01, in the style of nixpkgs'
# nixos/tests/acme/dns01.nix: nixpkgs' own ACME test server (pebble, with its test CA)
# and pebble-challtestsrv as the DNS server. lego's exec hook writes the TXT records
# into it; it answers every other name with the server's address, like the wildcard
# record *.<domain> an admin creates. Run it as described in docs/nixos-tests.md.
{ pkgs, self }:
let
  inherit (pkgs) lib;
  settings = import ./acme-settings.nix;
  inherit (import ./lib.nix) pythonConstants;
  acmeTestSupport = "${pkgs.path}/nixos/tests/common/acme";
  dnsServerIP = nodes: nodes.dnsserver.networking.primaryIPAddress;

  # lego's exec provider runs `hook present|cleanup <fqdn> <value>`.
  dnsHook = dnsServer: pkgs.writeShellScript "acme-dns-hook" ''
    set -euo pipefail
    if [ "$1" = present ]; then
      printf '{"host": "%s", "value": "%s"}' "$2" "$3" \
        | ${lib.getExe pkgs.curl} -fsS --data @- http://${dnsServer}:8055/set-txt
    else
      printf '{"host": "%s"}' "$2" \
        | ${lib.getExe pkgs.curl} -fsS --data @- http://${dnsServer}:8055/clear-txt
    fi
  '';

  challtestsrv = serverIP: pkgs.writeShellScript "pebble-challtestsrv" ''
    # pebble renamed -dns01 to -dnsserver; use whichever this release knows.
    dns=-dns01
    if ${pkgs.pebble}/bin/pebble-challtestsrv -help 2>&1 | grep -q -- -dnsserver; then dns=-dnsserver; fi
    exec ${pkgs.pebble}/bin/pebble-challtestsrv "$dns" :53 -management :8055 \
      -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv6 "" -defaultIPv4 ${serverIP}
  '';
in
{
  name = "code-server-multi-acme-wildcard";

  nodes = {
    # The ACME server, exactly as nixpkgs' own ACME tests run it.
    acme = { nodes, ... }: {
      imports = [ "${acmeTestSupport}/server" ];
      networking.nameservers = lib.mkForce [ (dnsServerIP nodes) ];
    };

    dnsserver = { nodes, ... }: {
      networking.firewall.allowedTCPPorts = [ 53 8055 ];
      networking.firewall.allowedUDPPorts = [ 53 ];
      systemd.services.pebble-challtestsrv = {
        description = "Test DNS: lego's TXT records, and every other name at the server";
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart = challtestsrv nodes.server.networking.primaryIPAddress;
          AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        };
      };
    };

    server = { config, nodes, ... }: {
      imports = [
        (import ./server-node.nix { inherit self settings; })
        # Trusts the ACME server's test CA and points security.acme at it.
        "${acmeTestSupport}/client"
      ];
      networking.nameservers = lib.mkForce [ (dnsServerIP nodes) ];
      # The test DNS server is the only one; there is nothing to wait for.
      security.acme.certs.${config.services.code-server-multi.plan.acme.certName}.dnsPropagationCheck = false;
      environment.etc.${lib.removePrefix "/etc/" settings.acme.credentialsFile} = {
        mode = "0400";
        text = ''
          EXEC_PATH=${dnsHook (dnsServerIP nodes)}
          EXEC_POLLING_INTERVAL=1
          EXEC_PROPAGATION_TIMEOUT=1
          EXEC_SEQUENCE_INTERVAL=1
        '';
      };
    };

    # A team member's machine: resolves names through the test DNS (the wildcard
    # record), trusts only the ACME server's CA for its management API.
    client = { nodes, pkgs, ... }: {
      networking.nameservers = lib.mkForce [ (dnsServerIP nodes) ];
      security.pki.certificateFiles = [ nodes.acme.test-support.acme.caCert ];
      environment.systemPackages = [ pkgs.curl pkgs.openssl ];
    };
  };

  testScript = { nodes, ... }:
    pythonConstants { PLAN = nodes.server.services.code-server-multi.plan; }
    + builtins.readFile ./acme-wildcard.py;
}

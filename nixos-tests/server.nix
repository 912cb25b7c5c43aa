# Two users behind nginx over HTTPS, checked the way an admin would: the test script
# imports csm.checks and runs the host checks and the image contract on the server
# (through machine.succeed), and a team member's machine (client) runs `csm smoke`,
# the same HTTP and WebSocket checks, through nginx. Run it as described in
# docs/nixos-tests.md.
#
# HTTPS comes from a test CA's wildcard certificate (csm/runner/local_ca.py), given
# to the module's `tls` option as files (acme-wildcard.nix tests the ACME path).
{ pkgs, self }:
let
  inherit (pkgs) lib;
  settings = import ./server-settings.nix;
  passwords = import ./passwords.nix;
  inherit (import ./lib.nix) pythonConstants;
  system = pkgs.stdenv.hostPlatform.system;
  testDir = "/etc/code-server-multi-test";
  caFile = "${testDir}/ca.pem";
  passwordFiles = builtins.mapAttrs (name: _: "${testDir}/${name}.password") passwords;
  outsidePort = 8000;  # the client's stand-in for the internet, as the containers see it

  # A CA and a certificate for <domain> and *.<domain>, by the recipe `csm up
  # --tls-port` uses (csm/runner/local_ca.py). The CA's key is not kept.
  csmPython = pkgs.python3.withPackages (p: [ (p.toPythonModule self.packages.${system}.csm) ]);
  tls = pkgs.runCommand "code-server-multi-test-tls" { nativeBuildInputs = [ pkgs.openssl csmPython ]; } ''
    python3 -m csm.runner.local_ca $out ${settings.domain}
    rm $out/ca.key
  '';
  caCertificate = "${tls}/ca.crt";
in
{
  name = "code-server-multi-server";

  extraPythonPackages = p: [ (p.toPythonModule self.packages.${system}.csm) ];

  nodes = {
    server = {
      imports = [ (import ./server-node.nix { inherit self settings; }) ];
      services.code-server-multi.tls = { certificateFile = "${tls}/${settings.domain}.crt"; keyFile = "${tls}/${settings.domain}.key"; };
    };

    # A team member's machine: trusts the test CA, knows the users' names, and has
    # the csm CLI and the users' passwords to run `csm smoke`.
    client = { nodes, ... }: {
      environment.systemPackages = [ self.packages.${system}.csm pkgs.curl pkgs.python3 ];
      networking.firewall.allowedTCPPorts = [ outsidePort ];
      environment.etc = {
        ${lib.removePrefix "/etc/" caFile}.source = caCertificate;
      } // lib.mapAttrs' (name: file: lib.nameValuePair (lib.removePrefix "/etc/" file) {
        text = passwords.${name};
        mode = "0400";
      }) passwordFiles;
      security.pki.certificateFiles = [ caCertificate ];
      networking.hosts.${nodes.server.networking.primaryIPAddress} =
        map (u: u.hostname) (lib.attrValues nodes.server.services.code-server-multi.plan.users);
    };
  };

  testScript = { nodes, ... }:
    pythonConstants {
      PLAN = nodes.server.services.code-server-multi.plan;
      PLAN_FILE = nodes.server.services.code-server-multi.planFile;   # where csm finds it
      SERVER_IP = nodes.server.networking.primaryIPAddress;
      CLIENT_IP = nodes.client.networking.primaryIPAddress;
      OUTSIDE_PORT = outsidePort;
      # Five more addresses of the client on the test network (192.168.1.0/24).
      LOCKOUT_ADDRESSES = map (n: "192.168.1.${toString n}") [ 201 202 203 204 205 ];
      # The test network's IPv6 (the driver gives each node 2001:db8:1::<n>/64), and
      # five more addresses of the client in that one /64: they share one allowance
      # of wrong passwords (plan.gate.ipv6Prefix).
      SERVER_IP6 = nodes.server.networking.primaryIPv6Address;
      CLIENT_IP6 = nodes.client.networking.primaryIPv6Address;
      LOCKOUT_ADDRESSES_6 = map (n: "2001:db8:1::${toString n}") [ 201 202 203 204 205 ];
      CA_FILE = caFile;
      PASSWORD_FILES = passwordFiles;
      # The sources csm reads (image/contract.json, versions.json for csm.checks.image):
      # the package's copy, which its wrapper would name; this script imports csm without it.
      SOURCE_DIR = "${self.packages.${system}.csm.sourceDir}";
    }
    + builtins.readFile ./server.py;
}

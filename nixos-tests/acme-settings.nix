# Settings of the server node in acme-wildcard.nix: the server test's users, plus a
# wildcard certificate by DNS-01. "exec" is lego's provider that runs a program for
# each TXT record; the credentials file (written by the test node) names that program.
let server = import ./server-settings.nix; in
server // {
  # Not cy, who is stopped when idle: this test waits for every user's unit.
  users = removeAttrs server.users [ "cy" ];
  acme = {
    enable = true;
    dnsProvider = "exec";
    credentialsFile = "/etc/code-server-multi-test/acme-dns.env";
  };
}

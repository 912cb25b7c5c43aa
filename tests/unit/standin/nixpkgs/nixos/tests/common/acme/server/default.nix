# Stand-in for nixpkgs' nixos/tests/common/acme/server (the ACME test support):
# the tests evaluate the code-server-multi host, not nixpkgs' ACME test server.
{ ... }: { }

# The parts of nixos-tests/ that Nix builtins can evaluate, for test_nixos_tests.py.
# `pkgs` and `self` are left empty on purpose: runNixOSTest hands back the test module
# itself, and anything that needs nixpkgs or the flake's packages (nodes, derivations)
# fails loudly if touched here. The node values a test script reads are the plan of
# the test's settings file (what the module computes from them) and the nodes' addresses.
{ root, testName, settingsFile }:
let
  pkgs = { testers.runNixOSTest = test: test; };
  self = { };
  test = (import (root + "/nixos-tests") { inherit pkgs self; }).${testName};
  plan = import (root + "/modules/code-server-multi/plan.nix") (import settingsFile);
  nodes.server = {
    services.code-server-multi.plan = plan;
    networking.primaryIPAddress = "192.0.2.10";
  };
  nodes.client.networking.primaryIPAddress = "192.0.2.20";
in
{
  inherit (test) name;
  tests = builtins.attrNames (import (root + "/nixos-tests") { inherit pkgs self; });
  nodes = builtins.attrNames test.nodes;
  testScript = test.testScript { inherit nodes; };
}

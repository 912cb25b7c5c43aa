# Every output of the flake, evaluated the way `nix flake check` does, against a
# stand-in nixpkgs (standin/pkgs.nix; nothing is built). For test_flake_eval.py:
#   nix-instantiate tests/unit/flake_eval.nix -A packages --arg root ./.    # the .drv graph
#   nix-instantiate --eval --strict --json tests/unit/flake_eval.nix -A outputs --arg root ./.
# With nixpkgsLib (a nixpkgs lib checkout) its lib is the real one, and `host` and the
# VM tests' server nodes are evaluated by lib.evalModules with nixpkgs' real
# oci-containers module (ociContainers) and the other NixOS options they set declared
# by tests/tier2/nixos-options.nix; without it, lib is standin/lib.nix.
{
  root,
  nixpkgsLib ? null,
  ociContainers ? null,
}:
let
  system = "x86_64-linux";
  lib = if nixpkgsLib == null then import ./standin/lib.nix else import (nixpkgsLib + "/lib");
  pkgs = import ./standin/pkgs.nix { inherit lib; };
  nixpkgs = {
    inherit lib;
    legacyPackages.${system} = pkgs;
  };
  flake = import (root + "/flake.nix");
  self = flake.outputs { inherit self nixpkgs; } // {
    outPath = root;
  };

  plan = settingsFile: self.lib.plan (import settingsFile);
  forced = x: builtins.deepSeq x x;

  # A NixOS host (tier 2): the given modules, real oci-containers, the other NixOS options they set.
  evalHost =
    modules: args:
    (lib.evalModules {
      modules = [
        (import ../tier2/nixos-options.nix { inherit lib ociContainers; })
        { _module.args = { inherit pkgs; } // args; }
      ] ++ modules;
    }).config;
  failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  # The login gate's unit, and the csm it runs.
  gateOf =
    config:
    let
      cfg = config.services.code-server-multi;
    in
    {
      execStart = config.systemd.services.${lib.removeSuffix ".service" cfg.plan.gate.unit}.serviceConfig.ExecStart;
      # (not outPath: an attribute set with one is written to JSON as that string)
      package = { drvPath = cfg.package.drvPath; out = cfg.package.outPath; };
    };
  containers =
    config:
    builtins.mapAttrs (_: c: {
      inherit (c) image;
      imageStream = if c.imageStream == null then null else c.imageStream.drvPath;
    }) config.virtualisation.oci-containers.containers;

  # The VM tests, as runNixOSTest (here the identity) receives them. Without the
  # module system a node is the plan of its settings and an address (what the test
  # scripts read); with it, the server node is evaluated.
  vmTests = self.checks.${system};
  settingsOf = {
    server = root + "/nixos-tests/server-settings.nix";
    acme-wildcard = root + "/nixos-tests/acme-settings.nix";
  };
  # The client (a team member's machine) is only ever read for its address.
  client.networking = { primaryIPAddress = "192.0.2.20"; primaryIPv6Address = "2001:db8:1::1"; };
  planNodes = name: {
    inherit client;
    server = {
      services.code-server-multi.plan = plan settingsOf.${name};
      # The module's default (with nixpkgsLib the real option is read, and
      # test_nixos_tests.py checks the script against it).
      services.code-server-multi.planFile = "/etc/code-server-multi/plan.json";
      networking = { primaryIPAddress = "192.0.2.10"; primaryIPv6Address = "2001:db8:1::2"; };
    };
  };
  evaluatedNodes =
    test:
    let
      nodes = builtins.mapAttrs (name: node: evalHost [ node ] { inherit nodes; }) {
        inherit (test.nodes) server;
      } // { inherit client; };
    in
    nodes;
  describeTest =
    name: test:
    let
      nodes = if nixpkgsLib == null then planNodes name else evaluatedNodes test;
    in
    {
      inherit (test) name;
      nodes = builtins.attrNames test.nodes;
      testScript = test.testScript { inherit nodes; };
    }
    // lib.optionalAttrs (nixpkgsLib != null) {
      server = {
        assertions = failedAssertions nodes.server;
        containers = containers nodes.server;
        gate = gateOf nodes.server;
        systemPackages = map (p: p.drvPath) nodes.server.environment.systemPackages;
      };
    };
in
{
  inherit self pkgs;

  # nix-instantiate -A packages: every package, instantiated.
  packages = self.packages.${system};

  outputs = forced {
    packages = builtins.mapAttrs (_: p: p.drvPath) self.packages.${system};
    # nixpkgs' own code-server and opencode, which must not reach the image.
    nixpkgs = {
      code-server = pkgs.code-server.outPath;
      opencode = pkgs.opencode.outPath;
      nodejs_24 = pkgs.nodejs_24.outPath;
      glibc = pkgs.glibc.outPath;
    };
    nixosModules = builtins.attrNames self.nixosModules;
    # What the flake's module makes of image, imageStream and package when a host
    # does not set them (mkDefault values).
    moduleDefaults =
      let
        m = self.nixosModules.default {
          inherit lib pkgs;
          config = { };
        };
        c = m.services.code-server-multi;
      in
      {
        image = c.image.content;
        imageStream = c.imageStream.content.drvPath;
        package = c.package.content.drvPath;
      };
    plans = {
      demo = plan (root + "/examples/demo.nix");
      team = plan (root + "/examples/team.nix");
    };
    # lib.kube: the plan as Kubernetes objects (csm kube render).
    kube.team = self.lib.kube { settings = import (root + "/examples/team.nix"); };
    checks = builtins.mapAttrs describeTest vmTests;
  };

  # Tier 2: a NixOS host that imports the flake's module and does not set the image.
  host =
    let
      config = evalHost [
        self.nixosModules.default
        { services.code-server-multi = import (root + "/examples/team.nix") // { enable = true; }; }
      ] { };
    in
    forced {
      assertions = failedAssertions config;
      containers = containers config;
      gate = gateOf config;
      systemPackages = map (p: p.drvPath) config.environment.systemPackages;
    };
}

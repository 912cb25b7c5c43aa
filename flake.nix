{
  description = "code-server-multi: a browser VS Code with opencode for each person of a small team, each in a Podman container behind nginx";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # The pure plan: settings -> everything a deployment runs (builtins only).
      lib.plan = import ./modules/code-server-multi/plan.nix;
      # The same plan as Kubernetes objects (docs/kubernetes.md):
      #   lib.kube { settings = ...; namespace = "code-server-multi"; } -> { objects, secrets, notes }
      lib.kube = import ./modules/code-server-multi/kube.nix;

      nixosModules.code-server-multi = { lib, pkgs, ... }: {
        imports = [ ./modules/code-server-multi ];
        services.code-server-multi = {
          imageStream = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.image;
          image = lib.mkDefault (let s = self.packages.${pkgs.stdenv.hostPlatform.system}.image; in "${s.imageName}:${s.imageTag}");
          package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.csm;
        };
      };
      nixosModules.default = self.nixosModules.code-server-multi;

      packages = forAllSystems (pkgs: {
        image = pkgs.callPackage ./image { };
        csm = pkgs.python3Packages.callPackage ./package.nix { };
        gate-image = pkgs.callPackage ./image/gate.nix { inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) csm; };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.csm;
      });

      checks = forAllSystems (pkgs: import ./nixos-tests { inherit pkgs self; });
    };
}

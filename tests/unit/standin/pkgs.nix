# A stand-in for nixpkgs' legacyPackages.x86_64-linux (nixos-25.11), for evaluating
# the flake where nixpkgs cannot be fetched.
#
# - callPackage is `lib.callPackageWith pkgs` of the lib it is given (nixpkgs' real one
#   under NIXPKGS_LIB), so it fills every argument the set has, defaults or not.
# - Like nixos-25.11 it carries a code-server at 4.91.1 and an opencode at a version
#   that is not the project's: whatever reaches the image from these is a defect.
# - Every builder makes a real derivation whose environment keeps the builder's
#   arguments (attribute sets as JSON), so `nix-instantiate` writes a .drv graph the
#   tests read back: what was fetched from where, by which hash, built with what.
#   Nothing is ever built.
# - fetchurl refuses a missing hash, as nixpkgs' does.
{ lib }:
let
  system = "x86_64-linux";

  isPlainSet = v: builtins.isAttrs v && !(v ? outPath);
  asEnv =
    v:
    if isPlainSet v || (builtins.isList v && builtins.any isPlainSet v) then builtins.toJSON v else v;
  envOf =
    args:
    builtins.mapAttrs (_: asEnv) (
      removeAttrs args (
        [ "passthru" "meta" "env" ] ++ builtins.filter (n: builtins.isFunction args.${n}) (builtins.attrNames args)
      )
    );

  mkDerivation =
    args:
    let
      name = args.name or "${args.pname}-${args.version}";
      drv = derivation (
        envOf args
        // builtins.mapAttrs (_: asEnv) (args.env or { })
        // {
          inherit name system;
          builder = "/bin/sh";
          args = [ "-c" "echo stand-in derivation, not buildable; exit 1" ];
        }
      );
    in
    drv
    // (args.passthru or { })
    // {
      meta = args.meta or { };
    }
    // builtins.intersectAttrs {
      pname = null;
      version = null;
    } args;

  package =
    pname: version: extra:
    mkDerivation (
      {
        inherit pname version;
        meta.mainProgram = pname;
      }
      // extra
    );

  fetchurl =
    {
      url,
      hash ? null,
      name ? baseNameOf url,
    }:
    if hash == null || hash == "" then
      throw "fetchurl requires a hash for fixed-output derivation: ${url}"
    else
      derivation {
        inherit name url system;
        builder = "builtin:fetchurl";
        outputHashMode = "flat";
        outputHash = hash;
      };

  runCommand = name: env: buildCommand: mkDerivation (env // { inherit name buildCommand; });

  python3Packages = {
    callPackage = lib.callPackageWith (pkgs // python3Packages);
    buildPythonApplication = mkDerivation;
    toPythonModule = p: p;
    setuptools = package "setuptools" "80.9.0" { };
    requests = package "requests" "2.32.5" { };
    websocket-client = package "websocket-client" "1.8.0" { };
    argon2-cffi = package "argon2-cffi" "25.1.0" { };
    mypy = package "mypy" "1.17.1" { };
  };
  ruff = package "ruff" "0.13.1" { };

  pkgs = {
    inherit
      lib
      pkgs
      fetchurl
      runCommand
      python3Packages
      ruff
      ;
    path = toString ./nixpkgs; # a plain directory, as a flake input's nixpkgs is a store path
    callPackage = lib.callPackageWith pkgs;
    stdenv = {
      inherit mkDerivation;
      hostPlatform.system = system;
      buildPlatform.system = system;
    };
    linkFarm =
      name: entries:
      mkDerivation {
        inherit name entries;
      };
    writeText = name: text: mkDerivation { inherit name text; };
    writeTextDir = path: text: mkDerivation {
      name = baseNameOf path;
      inherit path text;
    };
    writeShellScript = name: text: mkDerivation { inherit name text; };
    writeShellApplication = { name, text, ... }: mkDerivation { inherit name text; };
    dockerTools = {
      streamLayeredImage =
        args:
        mkDerivation (
          args
          // {
            name = "stream-${baseNameOf args.name}";
            imageName = args.name;
            imageTag = args.tag;
            passthru = args.passthru or { } // {
              imageTag = args.tag;
            };
          }
        );
      caCertificates = package "ca-certificates" "1" { };
      binSh = package "bin-sh" "1" { };
      usrBinEnv = package "usr-bin-env" "1" { };
    };
    testers.runNixOSTest = test: test;

    # The packages the flake means to use.
    nodejs_24 = package "nodejs" "24.11.1" { meta.mainProgram = "node"; };
    glibc = package "glibc" "2.40-66" { };
    makeWrapper = package "make-wrapper-hook" "1" { };
    python3 = package "python3" "3.13.9" { } // {
      withPackages = f: mkDerivation { name = "python3-3.13.9-env"; packages = f python3Packages; };
    };
    pkg-config = package "pkg-config-wrapper" "0.29.2" { };
    gnumake = package "gnumake" "4.4.1" { };
    krb5 = package "krb5" "1.22.1" { };
    git = package "git" "2.51.2" { };
    ripgrep = package "ripgrep" "15.1.0" { };
    curl = package "curl" "8.17.0" { };
    less = package "less" "679" { };
    tini = package "tini" "0.19.0" { };
    bashInteractive = package "bash-interactive" "5.3p3" { };
    coreutils = package "coreutils" "9.8" { };
    findutils = package "findutils" "4.10.0" { };
    gnugrep = package "gnugrep" "3.12" { };
    gnused = package "gnused" "4.9" { };
    gawk = package "gawk" "5.3.2" { };
    gnutar = package "gnutar" "1.35" { };
    gzip = package "gzip" "1.14" { };
    diffutils = package "diffutils" "3.12" { };
    procps = package "procps" "4.0.4" { };
    which = package "which" "2.23" { };
    openssl = package "openssl" "3.6.0" { };
    libargon2 = package "libargon2" "20190702" { };
    pebble = package "pebble" "2.8.0" { };

    # What nixos-25.11 has and the flake must NOT put into the image.
    code-server = package "code-server" "4.91.1" { };
    opencode = package "opencode" "1.0.0" { };
    nodejs = package "nodejs" "22.21.1" { meta.mainProgram = "node"; };
  };
in
pkgs

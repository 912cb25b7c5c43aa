# The user image, built by Nix: every user's container runs it.
#
#   image = pkgs.callPackage ./image { };
#
# It evaluates to a script that streams the image (dockerTools.streamLayeredImage):
# `$(nix build .#image --print-out-paths) | podman load`, or the module's `imageStream`.
#
# Everything the image ships that is not a nixpkgs tool comes from image/manifest.json
# (made by scripts/update-versions from image/versions.json), each file fetched by the
# hash npm publishes for it: code-server and every dependency its lock files name, built
# by image/build-code-server.sh exactly as the portable recipe builds it; opencode's
# linux-x64 binary; the VS Code extensions. Values the image and the plan share come
# from image/contract.json.
#
# Every argument is the nixpkgs package of that name, filled by callPackage. There is
# deliberately no `code-server` or `opencode` argument: callPackage would fill it with
# nixpkgs' own (older) ones.
{
  lib,
  stdenv,
  fetchurl,
  linkFarm,
  runCommand,
  writeText,
  writeShellScript,
  makeWrapper,
  dockerTools,
  glibc,
  nodejs_24,
  python3,
  pkg-config,
  gnumake,
  krb5,
  git,
  ripgrep,
  curl,
  less,
  tini,
  bashInteractive,
  coreutils,
  findutils,
  gnugrep,
  gnused,
  gawk,
  gnutar,
  gzip,
  diffutils,
  procps,
  which,
}:
let
  versions = builtins.fromJSON (builtins.readFile ./versions.json);
  manifest = builtins.fromJSON (builtins.readFile ./manifest.json);
  contract = builtins.fromJSON (builtins.readFile ./contract.json);
  nodejs = nodejs_24;

  # A difference between what the image would ship and versions.json stops the evaluation.
  drift = lib.filter (d: d.have != d.want) [
    {
      what = "image/manifest.json was made from another image/versions.json (run scripts/update-versions)";
      have = builtins.toJSON manifest.versions;
      want = builtins.toJSON versions;
    }
    {
      what = "code-server";
      have = codeServer.version;
      want = versions."code-server";
    }
    {
      what = "opencode";
      have = opencode.version;
      want = versions.opencode;
    }
    {
      what = "node major of nixpkgs' nodejs_24 (take the nodejs_<major> versions.json names)";
      have = lib.versions.major nodejs.version;
      want = lib.versions.major versions.node;
    }
    {
      what = "extensions in image/manifest.json";
      have = builtins.toJSON manifest.extensions;
      want = builtins.toJSON versions.extensions;
    }
  ];
  checkVersions =
    x:
    if drift == [ ] then
      x
    else
      throw (
        "image/default.nix: the image would not be what image/versions.json says:\n"
        + lib.concatMapStrings (d: "  - ${d.what}: ${d.have} (versions.json: ${d.want})\n") drift
      );

  # Each file by the hash its registry publishes; a missing one is an error, not a fetch.
  pinned =
    where: hash:
    if builtins.isString hash && builtins.match "sha(256|384|512)-.+" hash != null then
      hash
    else
      throw "image/default.nix: ${where} has no SRI hash (got ${builtins.toJSON hash}); run scripts/update-versions";
  fetchEntry =
    e:
    fetchurl {
      inherit (e) url;
      hash = pinned "image/manifest.json: ${e.name}@${e.version}" e.integrity;
      name = storeName e.file; # the linkFarm below gives it its "file" name again
    };
  # A store path name may not hold "@" (scoped packages, "@vscode+spdlog-0.15.2.tgz").
  storeName = builtins.replaceStrings [ "@" ] [ "" ];

  # code-server's tarball and every dependency tarball, each under its "file" name.
  tarballs = linkFarm "code-server-tarballs" (
    map (e: {
      name = e.file;
      path = fetchEntry e;
    }) ([ manifest.codeServer ] ++ manifest.npmDependencies)
  );

  # The build sandbox has no /usr/bin/env, which the dependencies' install scripts name
  # in their #! lines: before `npm rebuild` runs them, point those lines at coreutils'
  # env (nixpkgs' own npm hooks patch shebangs at the same step).
  npmInSandbox = writeShellScript "npm" ''
    if [ "''${1-}" = rebuild ] && [ -d node_modules ]; then
      grep -rlZ '^#!/usr/bin/env ' node_modules \
        | xargs -0 -r sed -i '1s|^#!/usr/bin/env |#!${coreutils}/bin/env |'
    fi
    exec ${nodejs}/bin/npm "$@"
  '';

  codeServer = stdenv.mkDerivation {
    pname = "code-server";
    inherit (manifest.codeServer) version;
    dontUnpack = true;
    # node-gyp builds the native modules (argon2, spdlog, sqlite3, kerberos, ...) with
    # stdenv's C/C++ compiler against nodejs_24's own headers, never downloaded ones.
    nativeBuildInputs = [
      nodejs
      python3
      pkg-config
      gnumake
      makeWrapper
    ];
    buildInputs = [ krb5 ];
    env.npm_config_nodedir = "${nodejs}";
    buildPhase = ''
      runHook preBuild
      export HOME=$TMPDIR
      mkdir -p $TMPDIR/bin && ln -s ${npmInSandbox} $TMPDIR/bin/npm && export PATH=$TMPDIR/bin:$PATH
      bash ${./build-code-server.sh} ${tarballs} $out/libexec/code-server
      # node-gyp's intermediates name the compiler's store paths: left in, they would
      # pull the C toolchain into the image. The built .node files stay.
      find $out/libexec/code-server -path '*/node_modules/*/build/*' \
        \( -name obj.target -o -name .deps -o -name '*.mk' -o -name Makefile \
           -o -name config.gypi -o -name '*.o' -o -name '*.a' \) -prune -exec rm -rf {} +
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      makeWrapper ${lib.getExe nodejs} $out/bin/code-server \
        --add-flags $out/libexec/code-server/out/node/entry.js
      runHook postInstall
    '';
    meta.mainProgram = "code-server";
  };

  # opencode's own linux-x64 build: a Bun single-file executable, whose program lives in
  # the ELF's .bun section and is read back through /proc/self/exe. It is installed
  # byte for byte (no strip, no patchelf) and finds its loader at the standard
  # /lib64/ld-linux-x86-64.so.2 that `loader` puts into the image; it needs only glibc.
  opencode = stdenv.mkDerivation {
    pname = "opencode";
    inherit (manifest.opencode) version;
    src = fetchEntry manifest.opencode;
    dontConfigure = true;
    dontBuild = true;
    dontFixup = true;
    installPhase = ''
      runHook preInstall
      install -Dm755 bin/opencode $out/bin/opencode
      runHook postInstall
    '';
    meta.mainProgram = "opencode";
  };

  loader = runCommand "lib64-ld-linux" { } ''
    mkdir -p $out/lib64
    ln -s ${glibc}/lib/ld-linux-x86-64.so.2 $out/lib64/ld-linux-x86-64.so.2
  '';

  vsixes = map (
    e:
    e
    // {
      src = fetchurl {
        inherit (e) url;
        hash = pinned "image/versions.json: extension ${e.id}@${e.version}" e.hash;
        name = "${e.id}-${e.version}.vsix";
      };
    }
  ) versions.extensions;

  # The project's own extension ("Log out" in the workbench), packed by the same
  # script the portable recipe runs.
  session = {
    id = "code-server-multi.session";
    version = (builtins.fromJSON (builtins.readFile ./session-extension/package.json)).version;
    src = runCommand "code-server-multi.session.vsix" { nativeBuildInputs = [ python3 ]; } ''
      python3 ${./session-extension/pack.py} $out
    '';
  };
  installedExtensions = vsixes ++ [ session ];

  inherit (contract) home user uid gid extensionsDir;
  owner = "${toString uid}:${toString gid}";

  # code-server installs each VSIX itself (the layout and extensions.json it
  # expects), then the recorded paths are made the ones inside the image.
  extensions =
    runCommand "code-server-multi-extensions"
      {
        nativeBuildInputs = [
          codeServer
          gnugrep
        ];
      }
      ''
        export HOME=$TMPDIR
        mkdir -p $out
        ${lib.concatMapStrings (e: ''
          code-server --user-data-dir "$TMPDIR/data" --extensions-dir "$out" \
            --install-extension ${e.src}
          code-server --user-data-dir "$TMPDIR/data" --extensions-dir "$out" \
            --list-extensions --show-versions | grep -qix '${e.id}@${e.version}' || {
            echo "${e.id}@${e.version} did not install (is code-server ${codeServer.version} new enough for it?)" >&2
            exit 1
          }
        '') installedExtensions}
        sed -i "s|$out|${extensionsDir}|g" "$out/extensions.json"
      '';

  passwd = ''
    root:x:0:0:root:/root:/bin/sh
    ${user}:x:${owner}:${user}:${home}:/bin/bash
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false
  '';
  group = ''
    root:x:0:
    ${user}:x:${toString gid}:
    nogroup:x:65534:
  '';

  labels = {
    "org.opencontainers.image.title" = "code-server-multi";
    "code-server-multi.recipe" = "nix";
    "code-server-multi.code-server" = codeServer.version;
    "code-server-multi.opencode" = opencode.version;
    "code-server-multi.node" = nodejs.version;
    "code-server-multi.extensions" = lib.concatMapStringsSep "," (e: "${e.id}@${e.version}") installedExtensions;
  };
  port = "${toString contract.port}/tcp";
in
checkVersions (
  dockerTools.streamLayeredImage {
    name = contract.imageName;
    tag = contract.imageTag;

    contents = [
      codeServer
      opencode
      loader
      nodejs # node and npm
      python3
      git
      ripgrep
      curl
      less
      tini
      bashInteractive
      coreutils
      findutils
      gnugrep
      gnused
      gawk
      gnutar
      gzip
      diffutils
      procps
      which
      dockerTools.caCertificates # /etc/ssl/certs/ca-bundle.crt
      dockerTools.binSh # /bin/sh
      dockerTools.usrBinEnv # /usr/bin/env
    ];

    # Runs as root under fakeroot in the image's top layer.
    fakeRootCommands = ''
      mkdir -p ./etc ./tmp ./root .${contract.project} .${extensionsDir}
      chmod 1777 ./tmp
      chmod 0700 ./root
      rm -f ./etc/passwd ./etc/group
      cp ${writeText "passwd" passwd} ./etc/passwd
      cp ${writeText "group" group} ./etc/group
      chmod 0644 ./etc/passwd ./etc/group
      cp -r ${extensions}/. .${extensionsDir}/
      chmod -R u+w .${extensionsDir}
      chown -R ${owner} .${home} .${extensionsDir}
    '';

    config = {
      Entrypoint = [
        "${tini}/bin/tini"
        "--"
      ];
      # Only the image's own facts; the plan gives the full command (auth, telemetry...).
      Cmd = [
        "code-server"
        "--bind-addr"
        "0.0.0.0:${toString contract.port}"
        "--extensions-dir"
        extensionsDir
        contract.project
      ];
      User = owner;
      WorkingDir = contract.project;
      ExposedPorts.${port} = { };
      Env = [
        "PATH=/bin:/usr/bin"
        "HOME=${home}"
        "USER=${user}"
        "LANG=C.UTF-8"
        "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
        "NIX_SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
        "OPENCODE_DISABLE_AUTOUPDATE=1"
      ];
      Labels = labels;
    };

    passthru = {
      inherit
        codeServer
        opencode
        extensions
        versions
        manifest
        ;
    };
  }
)

# The user image, built by Nix: every user's container runs it.
#
#   image = pkgs.callPackage ./image { };     # or: import ./image { inherit pkgs; }
#
# It evaluates to a script that streams the image (dockerTools.streamLayeredImage):
# `$(nix build .#image --print-out-paths) | podman load`, or the module's `imageStream`.
# The portable recipe (csm/image.py) builds the same image on any Debian/Ubuntu host;
# both read image/versions.json and must pass the contract in csm/checks/image.py.
{
  pkgs,
  # What the image ships. code-server: the upstream release versions.json pins
  # (./code-server.nix; nixpkgs' is too old for the extension); opencode: nixpkgs'.
  # Pass others (a newer nixpkgs, an overlay) to follow versions.json more closely.
  code-server ? null,
  opencode ? pkgs.opencode,
  # null: the nodejs_<major> that image/versions.json names.
  nodePackage ? null,
  # A difference between these packages and image/versions.json is a warning;
  # with strictVersions it stops the evaluation.
  strictVersions ? false,
}:
let
  inherit (pkgs) lib;

  versions = builtins.fromJSON (builtins.readFile ./versions.json);
  nodeMajor = lib.versions.major versions.node;
  nodejs = if nodePackage != null then nodePackage else pkgs."nodejs_${nodeMajor}";
  codeServer = if code-server != null then code-server
    else pkgs.callPackage ./code-server.nix { inherit nodejs versions; };

  home = "/home/coder";
  extensionsDir = "/opt/code-server/extensions";

  drift = lib.filter (d: d.have != d.want) [
    {
      name = "code-server";
      have = codeServer.version;
      want = versions."code-server";
    }
    {
      name = "opencode";
      have = opencode.version;
      want = versions.opencode;
    }
    {
      name = "node (major)";
      have = lib.versions.major nodejs.version;
      want = nodeMajor;
    }
  ];
  driftMessage =
    "image: these packages differ from image/versions.json: "
    + lib.concatMapStringsSep ", " (d: "${d.name} ${d.have} (versions.json: ${d.want})") drift
    + ". Pass newer ones to image/default.nix, or update versions.json.";
  checkVersions =
    x:
    if drift == [ ] then
      x
    else if strictVersions then
      throw driftMessage
    else
      lib.warn driftMessage x;

  vsixes = map (
    e:
    e
    // {
      src = pkgs.fetchurl {
        inherit (e) url hash;
        name = "${e.id}-${e.version}.vsix";
      };
    }
  ) versions.extensions;

  # code-server installs each VSIX itself (the layout and extensions.json it
  # expects), then the recorded paths are made the ones inside the image.
  extensions =
    pkgs.runCommand "code-server-multi-extensions"
      {
        nativeBuildInputs = [
          codeServer
          pkgs.gnugrep
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
        '') vsixes}
        sed -i "s|$out|${extensionsDir}|g" "$out/extensions.json"
      '';

  passwd = ''
    root:x:0:0:root:/root:/bin/sh
    coder:x:1000:1000:coder:${home}:/bin/bash
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false
  '';
  group = ''
    root:x:0:
    coder:x:1000:
    nogroup:x:65534:
  '';

  labels = {
    "org.opencontainers.image.title" = "code-server-multi";
    "code-server-multi.recipe" = "nix";
    "code-server-multi.code-server" = codeServer.version;
    "code-server-multi.opencode" = opencode.version;
    "code-server-multi.node" = nodejs.version;
    "code-server-multi.extensions" = lib.concatMapStringsSep "," (e: "${e.id}@${e.version}") vsixes;
  };
in
checkVersions (
  pkgs.dockerTools.streamLayeredImage {
    name = "localhost/code-server-multi";
    tag = "latest";

    contents = [
      codeServer
      opencode
      nodejs # node and npm
      pkgs.python3
      pkgs.git
      pkgs.ripgrep
      pkgs.curl
      pkgs.less
      pkgs.tini
      pkgs.bashInteractive
      pkgs.coreutils
      pkgs.findutils
      pkgs.gnugrep
      pkgs.gnused
      pkgs.gawk
      pkgs.gnutar
      pkgs.gzip
      pkgs.diffutils
      pkgs.procps
      pkgs.which
      pkgs.dockerTools.caCertificates # /etc/ssl/certs/ca-bundle.crt
      pkgs.dockerTools.binSh # /bin/sh
      pkgs.dockerTools.usrBinEnv # /usr/bin/env
    ];

    # Runs as root under fakeroot in the image's top layer.
    fakeRootCommands = ''
      mkdir -p ./etc ./tmp ./root .${home}/project .${extensionsDir}
      chmod 1777 ./tmp
      chmod 0700 ./root
      rm -f ./etc/passwd ./etc/group
      cp ${pkgs.writeText "passwd" passwd} ./etc/passwd
      cp ${pkgs.writeText "group" group} ./etc/group
      chmod 0644 ./etc/passwd ./etc/group
      cp -r ${extensions}/. .${extensionsDir}/
      chmod -R u+w ./opt/code-server
      chown -R 1000:1000 .${home} ./opt/code-server
    '';

    config = {
      Entrypoint = [
        "${pkgs.tini}/bin/tini"
        "--"
      ];
      # Only the image's own facts; the plan gives the full command (auth, telemetry...).
      Cmd = [ "code-server" "--bind-addr" "0.0.0.0:8080" "--extensions-dir" extensionsDir "${home}/project" ];
      User = "1000:1000";
      WorkingDir = "${home}/project";
      ExposedPorts."8080/tcp" = { };
      Env = [
        "PATH=/bin:/usr/bin"
        "HOME=${home}"
        "USER=coder"
        "LANG=C.UTF-8"
        "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
        "NIX_SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
        "OPENCODE_DISABLE_AUTOUPDATE=1"
      ];
      Labels = labels;
    };

    passthru = {
      inherit extensions versions;
    };
  }
)

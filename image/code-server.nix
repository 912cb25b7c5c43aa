# code-server from its upstream release tarball, run by nixpkgs' Node.
#
# nixpkgs' own code-server (4.91.1, VS Code 1.91) is older than the opencode
# extension accepts (VS Code ^1.94), so the Nix image takes the release that
# image/versions.json pins, like the portable image does.
{ lib, stdenv, fetchurl, autoPatchelfHook, makeWrapper, krb5, nodejs, versions }:
let
  version = versions."code-server";
  release = versions.codeServerRelease;
  url = "https://github.com/coder/code-server/releases/download/v${version}/code-server-${version}-linux-amd64.tar.gz";
in
if release.hash == null then
  throw ''
    image/versions.json: codeServerRelease.hash is not set, so the Nix image cannot fetch code-server ${version}.
    On a machine that reaches GitHub, run
      nix store prefetch-file --json ${url}
    and put its "hash" (sha256-...) into codeServerRelease.hash.''
else
stdenv.mkDerivation {
  pname = "code-server";
  inherit version;
  src = fetchurl { inherit url; inherit (release) hash; };

  nativeBuildInputs = [ autoPatchelfHook makeWrapper ];
  # Native modules: node-pty, argon2 (libstdc++), kerberos (GSSAPI).
  buildInputs = [ stdenv.cc.cc.lib krb5 ];

  installPhase = ''
    runHook preInstall
    mkdir -p $out/libexec/code-server $out/bin
    cp -r . $out/libexec/code-server
    # The bundled node is replaced by nixpkgs' node of the same major.
    rm -f $out/libexec/code-server/lib/node $out/libexec/code-server/bin/code-server
    makeWrapper ${lib.getExe nodejs} $out/bin/code-server \
      --add-flags $out/libexec/code-server/out/node/entry.js
    runHook postInstall
  '';

  meta = {
    description = "VS Code in the browser (upstream release)";
    homepage = "https://github.com/coder/code-server";
    license = lib.licenses.mit;
    platforms = [ "x86_64-linux" ];
    mainProgram = "code-server";
  };
}

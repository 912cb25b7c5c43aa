# The code-server-multi host both VM tests boot: the flake's module with the given
# settings (which also brings the login gate, its account csm-gate and nginx's
# membership in csm-proxy), the test users' password files where the settings say,
# and room for the containers.
{ self, settings }:
{ lib, pkgs, ... }:
let
  passwords = import ./passwords.nix;
  # What an admin's `argon2` writes: the password without a newline, the encoded
  # hash with one (the gate drops it). The gate gets each file as a systemd
  # credential (systemd reads it as root), so the files stay root's own, 0400.
  hashOf = name: pkgs.runCommand "code-server-multi-test-${name}.hash"
    { nativeBuildInputs = [ pkgs.libargon2 ]; } ''
      printf %s ${lib.escapeShellArg passwords.${name}} | argon2 code-server-multi-test -id -e > $out
    '';
  etcPath = path: lib.removePrefix "/etc/" path;
  secretFiles = name: user:
    if user ? hashedPasswordFile then {
      ${etcPath user.hashedPasswordFile} = { source = hashOf name; mode = "0400"; };
    } else {
      ${etcPath user.passwordFile} = { text = passwords.${name}; mode = "0400"; };
    };
in
{
  imports = [ self.nixosModules.default ];

  services.code-server-multi = settings // { enable = true; };

  environment.etc = lib.mkMerge (lib.mapAttrsToList secretFiles settings.users);
  environment.systemPackages = [ pkgs.curl pkgs.openssl ];

  virtualisation = {
    memorySize = 4096;
    diskSize = 8192;
    cores = 2;
  };
}

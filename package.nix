# The csm Python package (checks, portable runner, admin CLI) for Nix.
{ lib, buildPythonApplication, setuptools, requests, websocket-client, argon2-cffi }:
buildPythonApplication {
  pname = "csm";
  version = "0.1.0";
  pyproject = true;
  # (not lib.fileset: it needs Nix 2.14+, and this file is evaluated by Nix 2.8 in tests)
  src = lib.sourceByRegex ./. [ "pyproject\\.toml" "csm" "csm/.*" ];
  build-system = [ setuptools ];
  dependencies = [ requests websocket-client argon2-cffi ];
  pythonImportsCheck = [ "csm" "csm.checks" ];
  meta = {
    description = "Checks, portable runner and admin CLI of code-server-multi";
    mainProgram = "csm";
  };
}

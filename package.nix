# The csm Python package (checks, portable runner, admin CLI) for Nix.
{ lib, buildPythonApplication, setuptools, requests, websocket-client, argon2-cffi, ruff, mypy }:
let
  # What csm's checks and idle service read from image/ (the health path, the image's
  # user and port): the same files, copied beside the package.
  imageDir = builtins.path {
    path = ./image;
    name = "code-server-multi-image-contract";
    filter = path: _type: builtins.elem (baseNameOf path) [ "contract.json" "versions.json" "gate.json" ];
  };
in
buildPythonApplication {
  pname = "csm";
  version = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project.version;
  pyproject = true;
  # csm/ without what only tests and benchmarks use: csm/testing (it needs playwright)
  # and csm/bench (it drives Chromium through csm/testing). Nothing shipped imports
  # either (tests/unit/test_imports.py).
  # (not lib.fileset: it needs Nix 2.14+, and this file is evaluated by Nix 2.8 in tests)
  src = builtins.path {
    path = ./.;
    name = "source";
    filter =
      path: _type:
      let
        relative = lib.removePrefix "${toString ./.}/" path;
      in
      (relative == "pyproject.toml" || relative == "csm" || lib.hasPrefix "csm/" relative)
      && !(builtins.elem relative [ "csm/testing" "csm/bench" ]);
  };
  build-system = [ setuptools ];
  dependencies = [ requests websocket-client argon2-cffi ];
  makeWrapperArgs = [ "--set-default" "CSM_IMAGE_DIR" "${imageDir}" ];
  passthru = { inherit imageDir; };  # for Python that imports csm without the wrapper (VM tests)
  pythonImportsCheck = [ "csm" "csm.checks" ];
  # The gates of `make test-fast` (tests/unit/test_quality.py), on the package's source.
  nativeCheckInputs = [ ruff mypy ];
  checkPhase = ''
    runHook preCheck
    ruff check csm
    ruff format --check csm
    mypy
    runHook postCheck
  '';
  meta = {
    description = "Checks, portable runner and admin CLI of code-server-multi";
    mainProgram = "csm";
  };
}

# The csm Python package (checks, portable runner, admin CLI) for Nix.
{ lib, buildPythonApplication, setuptools, requests, websocket-client, argon2-cffi, ruff, mypy }:
let
  relativeTo = root: path: lib.removePrefix "${toString root}/" path;

  # What csm evaluates and reads at run time, beside the package and in the checkout's
  # layout, so that the relative imports and readFiles of the Nix files still resolve
  # (kube.nix reads ../../pyproject.toml and ../../image/contract.json): plan.nix and
  # everything it imports (`csm up`, `csm passwd`, ...), kube.nix and its parts
  # (`csm kube render`), and image/{contract,versions,gate}.json (csm.checks.facts).
  # Not the NixOS module's own files (default.nix, containers.nix, nginx.nix, ...):
  # nothing csm evaluates imports them. The wrapper points csm at it (CSM_SOURCE_DIR,
  # csm/plan.py: source_dir); tests/unit/test_package_source.py renders from it.
  sourceDir = builtins.path {
    path = ./.;
    name = "code-server-multi-sources";
    filter =
      path: type:
      let
        relative = relativeTo ./. path;
        modules = "modules/code-server-multi";
      in
      # the directories on the way to the files below
      builtins.elem relative [ "image" "modules" modules ]
      || builtins.elem relative [
        "pyproject.toml"
        "image/contract.json"
        "image/versions.json"
        "image/gate.json"
        "${modules}/plan.nix"
        "${modules}/defaults.nix"
        "${modules}/setting-names.nix"
      ]
      # kube.nix and its parts (kube-user.nix, kube-gate.nix, kube-acme.nix, ...)
      || (type == "regular" && builtins.match "${modules}/kube[^/]*[.]nix" relative != null)
      # the plan's parts and the pages it fills in: plan.nix reads every one
      || builtins.elem relative [ "${modules}/plan" "${modules}/pages" ]
      || lib.hasPrefix "${modules}/plan/" relative
      || lib.hasPrefix "${modules}/pages/" relative;
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
        relative = relativeTo ./. path;
      in
      (relative == "pyproject.toml" || relative == "csm" || lib.hasPrefix "csm/" relative)
      && !(builtins.elem relative [ "csm/testing" "csm/bench" ]);
  };
  build-system = [ setuptools ];
  dependencies = [ requests websocket-client argon2-cffi ];
  makeWrapperArgs = [ "--set-default" "CSM_SOURCE_DIR" "${sourceDir}" ];
  passthru = { inherit sourceDir; };  # for Python that imports csm without the wrapper (VM tests)
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

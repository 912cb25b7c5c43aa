# Small helpers of the VM tests. Builtins only, so tests/unit/test_nixos_tests.py can
# evaluate them without nixpkgs.
{
  # Python assignments NAME = <value> for the top of a test script, so the script
  # itself stays a plain .py file (linted and compiled by the unit tests). Each value
  # travels as JSON inside a JSON string literal, which Python reads as a str.
  pythonConstants = values:
    "import json\n"
    + builtins.concatStringsSep "" (map
      (name: "${name} = json.loads(${builtins.toJSON (builtins.toJSON values.${name})})\n")
      (builtins.attrNames values));
}

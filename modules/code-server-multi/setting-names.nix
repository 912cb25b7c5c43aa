# The top-level settings plan.nix takes and the module passes on: every default of
# defaults.nix but the per-user ones, and the two settings without a default.
builtins.attrNames (removeAttrs (import ./defaults.nix) [ "user" ]) ++ [ "domain" "users" ]

# The gate: the one front door (csm/gate). nginx asks it about every request to a
# user's host (auth_request); it serves the login, keeps the sessions, and wakes a
# stopped workspace for its logged-in owner. It runs as its own account and reaches
# the root side (csm idle) only through the control socket's verbs.
{ lib, cfg }:
let
  inherit (builtins) hashString substring;
  inherit (cfg) s gateSettings;
in
let
  # What any client of a deployment meets (paths below one prefix, the session
  # cookie's names), written once for the plan and for csm's checks, which run
  # against an address with no plan at hand.
  public = builtins.fromJSON (builtins.readFile ../../../image/gate.json);
in
rec {
  inherit (public) paths;
  # Each user's socket as nginx reaches it, named by a hash of the name: a socket's path
  # must fit in 107 bytes (sun_path), and a user name alone may take 63.
  socketLinks = "${s.runtimeDir}/sockets";
  socketOf = name: "${socketLinks}/${substring 0 16 (hashString "sha256" name)}.sock";

  plan =
    let
      gateDir = "${s.runtimeDir}/gate";
      controlDir = "${s.runtimeDir}/control";
    in {
      unit = "code-server-multi-gate.service";   # NixOS
      user = "csm-gate";            # the gate's own account (and group)
      proxyGroup = "csm-proxy";     # nginx's workers are in it: only they reach the sockets
      directory = gateDir;
      socket = "${gateDir}/gate.sock";
      control = { directory = controlDir; socket = "${controlDir}/control.sock"; };
      inherit (gateSettings) stateDir ipv6Prefix;
      inherit paths;
      # The header the front names the user with (nginx's proxy_set_header, Traefik's
      # headers Middleware), always its own value, never the client's: the gate reads it.
      userHeader = "X-CSM-User";
      # Host-only: __Host- needs Secure, so plain http (the demo) gets a plain name.
      inherit (public) cookie;
      sessionIdleSeconds = lib.parseDuration gateSettings.sessionIdleTimeout;
      sessionLifetimeSeconds = lib.parseDuration gateSettings.sessionLifetime;
      # Wrong passwords per client address (IPv6: per ipv6Prefix), per user: 2 a minute
      # plus 12 an hour, charged before the hash is checked and given back when right.
      wrongPasswords = { perMinute = 2; perHour = 12; };
      verificationsAtOnce = 2;      # argon2 takes 64 MiB each: more wait as "busy"
      retryAfterSeconds = 2;        # the starting page's refresh without JavaScript
      readyHoldSeconds = 10;        # the starting page's question is held this long at most
      heldAtOnce = 64;              # starting-page questions held at once
    };
}

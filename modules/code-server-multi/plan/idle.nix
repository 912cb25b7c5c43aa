# Idle stop and wake after login. A user's container stops after idleStopAfter with
# no open VS Code connection and its CPU under cpuThreshold (csm idle, as root); the
# next request of someone logged in meets nginx's 502 (the socket refuses), and the
# gate asks the root side to start it and shows the starting page until code-server
# answers.
{ cfg }:
let
  inherit (builtins) filter foldl';
  inherit (cfg) s names idleSecondsOf;
  users = filter (n: idleSecondsOf n != null) names;
  minIdle = foldl' (a: n: let v = idleSecondsOf n; in if a == null || v < a then v else a) null users;
in
{
  enable = users != [ ];
  inherit users;
  cpuThreshold = 0.05;          # CPUs, averaged over each check: more is work running
  healthTimeoutSeconds = 300;   # a start not healthy by then has failed (NixOS loads the image first)
  retryFailedAfterSeconds = 900; # a failed start is not tried again before this
  stateDir = "${s.runtimeDir}/idle";   # who was stopped for being idle, and when
  checkIntervalSeconds = if minIdle == null then 30 else
    let i = minIdle / 10; in if i < 2 then 2 else if i > 30 then 30 else i;
}

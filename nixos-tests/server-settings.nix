# Settings of the server node in server.nix: plain data, exactly what plan.nix accepts
# (tests/unit/test_nixos_tests.py evaluates them with csm.plan.load on every run).
# One user logs in with an argon2 hash, the other with a plain password file, so both
# secret paths are exercised; limits are small enough for a 4 GiB VM (cy is stopped
# for being idle most of the time).
{
  domain = "code.test";
  users = {
    ada = {
      hashedPasswordFile = "/etc/code-server-multi-test/ada.hash";
      memoryLimit = "1g";
      memorySoftLimit = "768m";
      diskQuota = "1G";   # filled in the runbook
    };
    bo = {
      passwordFile = "/etc/code-server-multi-test/bo.password";
      memoryLimit = "1g";
      memorySoftLimit = "768m";
    };
    # Stopped when idle, and woken by a visit; ada and bo stay on for the other checks.
    cy = {
      hashedPasswordFile = "/etc/code-server-multi-test/cy.hash";
      memoryLimit = "1g";
      memorySoftLimit = "768m";
      idleStopAfter = 30;
    };
  };
  idleStopAfter = null;
  diskQuota = "2G";       # sparse files: the VM's 8 GiB disk holds all three
}

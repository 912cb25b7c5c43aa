# One user on this machine: `make demo` brings it up at http://demo.code.localhost:8080
# (browsers resolve *.localhost to this machine by themselves).
{
  domain = "code.localhost";
  users.demo = {
    # Written by `csm passwd demo`; `make demo` creates it on first run.
    hashedPasswordFile = "/var/lib/code-server-multi/secrets/demo.hash";
  };
}

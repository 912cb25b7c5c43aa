"""code-server-multi: checks, portable runner and admin CLI."""

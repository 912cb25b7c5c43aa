# Test-only passwords of the VM tests' users. The server node writes them (hashed for
# ada) to the files server-settings.nix names; the test scripts log in with them.
{
  ada = "ada-vm-test-password";
  bo = "bo-vm-test-password";
  cy = "cy-vm-test-password";
}

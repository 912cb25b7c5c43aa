# The login gate's image for a cluster (docs/kubernetes.md): csm alone, which the
# gate Deployment of `csm kube render` runs as `csm gate serve --kube ...`.
#
#   $(nix build .#gate-image --print-out-paths) | sudo k3s ctr images import -
#
# Its name and tag are what kube.nix names by default (the project's version).
{ dockerTools, csm }:
dockerTools.streamLayeredImage {
  name = "code-server-multi-gate";
  tag = csm.version;
  contents = [ csm ];
  # The Deployment sets the account (not root: the gate refuses root) and the command.
  config = { Entrypoint = [ "${csm}/bin/csm" ]; Env = [ "PATH=/bin" ]; };
}

# The plan on Kubernetes (k3s by default): a pure function, builtins only like
# plan.nix, from the same settings to the objects `kubectl apply` takes.
#
#   import ./kube.nix { settings = import ../../examples/team.nix; namespace = "code-server-multi"; }
#
# Every value comes from the plan (validated there, with the same message as
# `csm up`) or from image/contract.json; what only Kubernetes needs is named here
# once. Secrets are never inline: `secrets` lists what the admin creates from the
# files the plan names (`csm kube render` prints the kubectl lines). docs/kubernetes.md.
{ settings, namespace ? "code-server-multi" }:
let
  inherit (builtins) attrNames concatLists concatStringsSep elemAt filter genList hashString
    length listToAttrs map match stringLength substring toJSON;

  plan = import ./plan.nix settings;
  contract = builtins.fromJSON (builtins.readFile ../../image/contract.json);
  user = import ./kube-user.nix { inherit plan contract labelsOf objectName gateName; };

  # ---- names Kubernetes needs, each once ----------------------------------------
  appLabel = "code-server-multi";
  # A StatefulSet's pods carry "<name>-<hash>" (controller-revision-hash), at most 63
  # characters: longer names keep a hash of the user name instead of their tail.
  objectName = name: c:
    if stringLength c <= 52 then c else "${substring 0 43 c}-${substring 0 8 (hashString "sha256" name)}";
  gateName = "${plan.namePrefix}-gate";
  labelsOf = name: {
    "app.kubernetes.io/name" = appLabel;
    "app.kubernetes.io/part-of" = appLabel;
    "app.kubernetes.io/instance" = name;
  };
  meta = name: extra: { inherit name namespace; labels = { "app.kubernetes.io/part-of" = appLabel; }; } // extra;

  namespaceProblem = match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" namespace == null;
  names = attrNames plan.users;
  users = map (n: plan.users.${n}) names;
  stsNames = map (u: objectName u.name u.container.name) users;

  # ---- the namespace: restricted pods, nothing talks unless allowed -----------
  namespaceObject = {
    apiVersion = "v1"; kind = "Namespace";
    metadata = { name = namespace; labels = {
      "app.kubernetes.io/part-of" = appLabel;
      # Pod Security Admission: the restricted profile, enforced.
      "pod-security.kubernetes.io/enforce" = "restricted";
      "pod-security.kubernetes.io/enforce-version" = "v1.33";
    }; };
  };
  defaultDeny = {
    apiVersion = "networking.k8s.io/v1"; kind = "NetworkPolicy";
    metadata = meta "default-deny" { };
    spec = { podSelector = { }; policyTypes = [ "Ingress" "Egress" ]; };
  };

  # ---- the front door: scale 0 <-> 1 and nothing else (the KubeSpawner pattern) --
  gateAccount = { apiVersion = "v1"; kind = "ServiceAccount"; metadata = meta gateName { }; automountServiceAccountToken = true; };
  gateRole = {
    apiVersion = "rbac.authorization.k8s.io/v1"; kind = "Role";
    metadata = meta gateName { };
    rules = [
      { apiGroups = [ "apps" ]; resources = [ "statefulsets/scale" ]; resourceNames = stsNames; verbs = [ "get" "patch" "update" ]; }
      { apiGroups = [ "" ]; resources = [ "pods" ]; verbs = [ "get" "list" "watch" ]; }
    ];
  };
  gateRoleBinding = {
    apiVersion = "rbac.authorization.k8s.io/v1"; kind = "RoleBinding";
    metadata = meta gateName { };
    roleRef = { apiGroup = "rbac.authorization.k8s.io"; kind = "Role"; name = gateName; };
    subjects = [ { kind = "ServiceAccount"; name = gateName; inherit namespace; } ];
  };
  # Traefik asks the gate about every request to a workspace (nginx's auth_request).
  forwardAuth = {
    apiVersion = "traefik.io/v1alpha1"; kind = "Middleware";
    metadata = meta gateName { };
    spec.forwardAuth = {
      address = "http://${gateName}.${namespace}.svc.cluster.local:${toString user.gatePort}${plan.gate.paths.auth}";
      trustForwardHeader = false;
    };
  };
  gateService = {
    apiVersion = "v1"; kind = "Service";
    metadata = meta gateName { };
    spec = {
      selector = labelsOf gateName;
      ports = [ { name = "http"; port = user.gatePort; targetPort = "http"; protocol = "TCP"; } ];
    };
  };

  # ---- TLS: one wildcard certificate by ACME DNS-01 ----------------------------
  acme = import ./kube-acme.nix { inherit plan meta; };

  objects = [ namespaceObject gateAccount gateRole gateRoleBinding defaultDeny gateService forwardAuth ]
    ++ acme.objects
    ++ concatLists (map (u: user.objects { inherit u namespace meta; tlsSecret = acme.tlsSecret; }) users);
  secrets = acme.secrets ++ [ {
    name = "${plan.namePrefix}-passwords";
    what = "the password files the gate reads (users.<name>.hashedPasswordFile / passwordFile)";
    fromFile = listToAttrs (map (u: { name = u.name; value = u.password.file; }) users);
  } ] ++ concatLists (map user.secrets users);
in
if namespaceProblem then
  throw "code-server-multi: invalid settings:\n  - namespace = ${toJSON namespace} is not a Kubernetes namespace; use 1 to 63 lowercase letters, digits and dashes, e.g. \"code-server-multi\""
else {
  inherit namespace objects secrets;
  # What the Kubernetes mapping leaves out, said where it is rendered.
  notes = acme.notes ++ concatLists (map user.notes users);
}

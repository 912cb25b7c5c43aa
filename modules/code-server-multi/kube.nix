# The plan on Kubernetes (k3s by default): a pure function, builtins only like
# plan.nix, from the same settings to the objects `kubectl apply` takes.
#
#   import ./kube.nix { settings = import ../../examples/team.nix; namespace = "code-server-multi"; }
#
# Every value comes from the plan (validated there, with the same message as
# `csm up`) or from image/contract.json; what only Kubernetes needs is named here
# once. Secrets are never inline: `secrets` lists what the admin creates from the
# files the plan names (`csm kube render` prints the kubectl lines). docs/kubernetes.md.
{ settings, namespace ? "code-server-multi"
  # The gate's image: `nix build .#gate-image` (image/gate.nix), loaded into the cluster.
, gateImage ? "code-server-multi-gate:${(builtins.fromTOML (builtins.readFile ../../pyproject.toml)).project.version}"
}:
let
  inherit (builtins) attrNames concatLists concatStringsSep filter foldl' genList groupBy
    hashString length listToAttrs map match stringLength substring toJSON;

  plan = import ./plan.nix settings;
  contract = builtins.fromJSON (builtins.readFile ../../image/contract.json);
  user = import ./kube-user.nix { inherit plan contract labelsOf objectName gateName peers userHeader imagePullPolicy; gate = gate; };

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
  # Traefik's Middlewares set it on a user's routes and clear it on the landing route,
  # whatever the client sent.
  inherit (plan.gate) userHeader;
  # The pods of the cluster ours talk to, in NetworkPolicy terms (k3s' own labels).
  peers = {
    ingressController = {   # k3s' Traefik
      namespaceSelector.matchLabels."kubernetes.io/metadata.name" = "kube-system";
      podSelector.matchLabels."app.kubernetes.io/name" = "traefik";
    };
    dns = {
      namespaceSelector.matchLabels."kubernetes.io/metadata.name" = "kube-system";
      podSelector.matchLabels."k8s-app" = "kube-dns";
    };
  };
  # The images are imported into each node (docs/kubernetes.md), never pulled: left to the
  # default, a :latest tag is pulled (Always) and the pod never starts.
  imagePullPolicy = "IfNotPresent";
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
      # Enforcement applies to pods; a workload that breaches it is only warned about.
      "pod-security.kubernetes.io/warn" = "restricted";
      "pod-security.kubernetes.io/warn-version" = "v1.33";
    }; };
  };
  defaultDeny = {
    apiVersion = "networking.k8s.io/v1"; kind = "NetworkPolicy";
    metadata = meta "default-deny" { };
    spec = { podSelector = { }; policyTypes = [ "Ingress" "Egress" ]; };
  };

  # ---- the front door: the gate, asked by Traefik, scaling users 0 <-> 1 -----------
  gate = import ./kube-gate.nix {
    inherit plan namespace meta labelsOf gateName gateImage stsNames contract;
    inherit peers userHeader imagePullPolicy;
    tlsSecret = acme.tlsSecret;
    users = map (u: { inherit (u) name; sts = objectName u.name u.container.name; }) users;
  };

  # ---- TLS: one wildcard certificate by ACME DNS-01 ----------------------------
  acme = import ./kube-acme.nix { inherit plan meta; };

  # ---- backups: a CronJob per user into one claim --------------------------------
  backup = import ./kube-backup.nix { inherit plan contract meta labelsOf objectName imagePullPolicy; };

  usersObjects = map (u: { inherit u; objects = user.objects { inherit u namespace meta; tlsSecret = acme.tlsSecret; }; }) users;
  front = [ namespaceObject defaultDeny ] ++ gate.objects ++ acme.objects;
  objects = front ++ concatLists (map (x: x.objects) usersObjects) ++ backup.objects;

  # A user's objects are named <namePrefix>-<name>..., their pods labelled with their name;
  # the front door's are <namePrefix>-gate..., the backups' <namePrefix>-backups. A user
  # named gate, gate-landing, backups, <another user>-gate or <namePrefix>-gate would
  # replace (or be selected as) one of those: such names are refused here.
  keysOf = objs: map (o: "${o.kind} ${o.metadata.name}") objs;
  podsOf = name: "pods labelled app.kubernetes.io/instance=${name}";
  shared = keysOf (front ++ backup.objects) ++ map (s: "Secret ${s.name}") (acme.secrets ++ [ passwords ]) ++ [ (podsOf gateName) ];
  ownKeys = map (x: { inherit (x.u) name; keys = keysOf x.objects
    ++ map (s: "Secret ${s.name}") (user.secrets x.u) ++ [ (podsOf x.u.name) ]; }) usersObjects;
  counted = groupBy (key: key) (shared ++ concatLists (map (o: o.keys) ownKeys));
  clashes = map (o: { inherit (o) name; keys = filter (key: length counted.${key} > 1) o.keys; }) ownKeys;
  clashProblems = map (c: "users.${c.name}: on Kubernetes this name gives ${concatStringsSep ", " c.keys}, which the front door, the backups or another user has too; choose another name")
    (filter (c: c.keys != [ ]) clashes);
  # A pod cannot set its pids limit: the kubelet's podPidsLimit does, one value per node.
  pidsLimit = foldl' (a: u: if u.limits.pids > a then u.limits.pids else a) 0 users;
  pidsNote = "the pids limit is the kubelet's podPidsLimit, one value per node: set it to ${toString pidsLimit} on every node (k3s: --kubelet-arg=pod-max-pids=${toString pidsLimit})"
    + (let lower = filter (u: u.limits.pids < pidsLimit) users; in if lower == [ ] then "" else
        "; the lower pidsLimit of ${concatStringsSep ", " (map (u: "${u.name} (${toString u.limits.pids})") lower)} is not enforced on a cluster");

  passwords = {
    name = "${plan.namePrefix}-passwords";
    what = "the password files the gate reads (users.<name>.hashedPasswordFile / passwordFile)";
    fromFile = listToAttrs (map (u: { name = u.name; value = u.password.file; }) users);
  };
  secrets = acme.secrets ++ [ passwords ] ++ concatLists (map user.secrets users);
in
if namespaceProblem then
  throw "code-server-multi: invalid settings:\n  - namespace = ${toJSON namespace} is not a Kubernetes namespace; use 1 to 63 lowercase letters, digits and dashes, e.g. \"code-server-multi\""
else if clashProblems != [ ] then
  throw "code-server-multi: invalid settings:\n  - ${concatStringsSep "\n  - " clashProblems}"
else {
  inherit namespace objects secrets;
  # What the Kubernetes mapping leaves out, said where it is rendered.
  notes = [ pidsNote ] ++ acme.notes ++ concatLists (map user.notes users) ++ backup.notes;
}

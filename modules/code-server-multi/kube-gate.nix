# kube.nix's front door: the login gate (`csm gate serve --kube`) as one Deployment,
# asked by Traefik's forwardAuth about every request to a workspace, showing the
# starting page when a stopped workspace is asked for (Traefik's errors middleware),
# and scaling users' StatefulSets 0 <-> 1 with a Role that allows only that.
{ plan, namespace, meta, labelsOf, gateName, gateImage, users, stsNames, contract, tlsSecret, peers, userHeader, imagePullPolicy }:
let
  inherit (builtins) listToAttrs map stringLength toJSON;

  port = 8000;                    # the gate's port inside the cluster (on a host: a Unix socket)
  uid = 65532;                    # any account but root: the gate refuses root
  configDir = "/etc/code-server-multi";
  credentialsDir = "/run/code-server-multi/passwords";
  labels = labelsOf gateName;
  m = extra: (meta gateName extra) // { inherit labels; };
  # argon2 takes 64 MiB per password checked; the gate checks verificationsAtOnce at once.
  memory = (128 + 64 * plan.gate.verificationsAtOnce) * 1024 * 1024;
  service = u: "http://${u.sts}.${namespace}.svc.cluster.local:${toString contract.port}";

  # What the gate knows of the cluster (csm/gate/kube.py reads it).
  facts = {
    inherit namespace port;
    users = listToAttrs (map (u: { name = u.name; value = {
      statefulSet = u.sts;
      selector = "app.kubernetes.io/instance=${u.name}";
      url = service u;
    }; }) users);
  };
  planJson = toJSON plan;
  # A ConfigMap holds 1 MiB; each user's plan is about 15 KB of it.
  tooLarge = stringLength planJson > 1000000;

  inherit (peers) ingressController dns;

  objects = [
    { apiVersion = "v1"; kind = "ServiceAccount"; metadata = m { }; automountServiceAccountToken = true; }
    {
      apiVersion = "rbac.authorization.k8s.io/v1"; kind = "Role";
      metadata = m { };
      rules = [
        { apiGroups = [ "apps" ]; resources = [ "statefulsets/scale" ]; resourceNames = stsNames; verbs = [ "get" "patch" ]; }
        { apiGroups = [ "" ]; resources = [ "pods" ]; verbs = [ "get" "list" ]; }
        { apiGroups = [ "metrics.k8s.io" ]; resources = [ "pods" ]; verbs = [ "get" "list" ]; }
      ];
    }
    {
      apiVersion = "rbac.authorization.k8s.io/v1"; kind = "RoleBinding";
      metadata = m { };
      roleRef = { apiGroup = "rbac.authorization.k8s.io"; kind = "Role"; name = gateName; };
      subjects = [ { kind = "ServiceAccount"; name = gateName; inherit namespace; } ];
    }
    {
      apiVersion = "v1"; kind = "ConfigMap";
      metadata = m { };
      data = { "plan.json" = planJson; "kube.json" = toJSON facts; };
    }
    {
      apiVersion = "v1"; kind = "PersistentVolumeClaim";
      metadata = m { };   # the sessions: logins outlive a restart of the gate
      spec = { accessModes = [ "ReadWriteOnce" ]; resources.requests.storage = "64Mi"; };
    }
    {
      apiVersion = "apps/v1"; kind = "Deployment";
      metadata = m { };
      spec = {
        replicas = 1;                  # sessions and login allowances live in one process
        strategy.type = "Recreate";    # its volume is ReadWriteOnce
        selector.matchLabels = labels;
        template = {
          metadata = { inherit labels; annotations."code-server-multi/plan-sha256" = builtins.hashString "sha256" planJson; };
          spec = {
            serviceAccountName = gateName;
            enableServiceLinks = false;
            securityContext = {
              runAsUser = uid; runAsGroup = uid; fsGroup = uid;
              runAsNonRoot = true;
              seccompProfile.type = "RuntimeDefault";
            };
            volumes = [
              { name = "config"; configMap.name = gateName; }
              { name = "passwords"; secret = { secretName = "${plan.namePrefix}-passwords"; defaultMode = 256; }; }  # 0400
              { name = "state"; persistentVolumeClaim.claimName = gateName; }
            ];
            containers = [ {
              name = "gate";
              image = gateImage;
              inherit imagePullPolicy;
              command = [ "csm" "gate" "serve" "--plan" "${configDir}/plan.json" "--credentials" credentialsDir "--kube" "${configDir}/kube.json" ];
              ports = [ { name = "http"; containerPort = port; protocol = "TCP"; } ];
              resources = {
                limits = { memory = toString memory; cpu = "1"; };
                requests = { memory = toString memory; cpu = "100m"; };
              };
              securityContext = {
                allowPrivilegeEscalation = false;
                capabilities.drop = [ "ALL" ];
                readOnlyRootFilesystem = true;
                runAsNonRoot = true;
              };
              volumeMounts = [
                { name = "config"; mountPath = configDir; readOnly = true; }
                { name = "passwords"; mountPath = credentialsDir; readOnly = true; }
                { name = "state"; mountPath = plan.gate.stateDir; }
              ];
              readinessProbe = { httpGet = { path = plan.gate.paths.health; port = "http"; }; periodSeconds = 5; };
              livenessProbe = { httpGet = { path = plan.gate.paths.health; port = "http"; }; periodSeconds = 30; };
            } ];
          };
        };
      };
    }
    {
      apiVersion = "v1"; kind = "Service";
      metadata = m { };
      spec = { selector = labels; ports = [ { name = "http"; inherit port; targetPort = "http"; protocol = "TCP"; } ]; };
    }
    {
      # Only Traefik asks the gate: the headers naming the user and the client are its.
      apiVersion = "networking.k8s.io/v1"; kind = "NetworkPolicy";
      metadata = m { };
      spec = {
        podSelector.matchLabels = labels;
        policyTypes = [ "Ingress" "Egress" ];
        ingress = [ { from = [ ingressController ]; ports = [ { port = "http"; protocol = "TCP"; } ]; } ];
        egress = [
          { to = [ dns ]; ports = [ { port = 53; protocol = "UDP"; } { port = 53; protocol = "TCP"; } ]; }
          # The Kubernetes API (its Service, or the server itself where kube-proxy is bypassed).
          { ports = [ { port = 443; protocol = "TCP"; } { port = 6443; protocol = "TCP"; } ]; }
          # code-server's heartbeat, for the idle decision.
          { to = [ { podSelector.matchExpressions = [ {
              key = "app.kubernetes.io/instance"; operator = "In"; values = map (u: u.name) users; } ]; } ];
            ports = [ { port = contract.port; protocol = "TCP"; } ]; }
        ];
      };
    }
    {
      # Traefik asks the gate about every request to a workspace (nginx's auth_request).
      apiVersion = "traefik.io/v1alpha1"; kind = "Middleware";
      metadata = m { };
      spec.forwardAuth = {
        address = "http://${gateName}.${namespace}.svc.cluster.local:${toString port}${plan.gate.paths.auth}";
        trustForwardHeader = false;
      };
    }
    {
      # Names no one is served on get the gate's landing page (404), as nginx's default
      # server gives it on a host: any other name of the domain, the domain itself, and
      # (no host) what no other route of the cluster takes, at Traefik's lowest priority.
      apiVersion = "networking.k8s.io/v1"; kind = "Ingress";
      metadata = m { annotations = {
        "traefik.ingress.kubernetes.io/router.priority" = "1";
        "traefik.ingress.kubernetes.io/router.middlewares" = "${namespace}-${gateName}-landing@kubernetescrd";
      }; } // { name = "${gateName}-landing"; };
      spec = {
        ingressClassName = "traefik";
        rules = map (host: (if host == null then { } else { inherit host; }) // { http.paths = [ {
          path = "/"; pathType = "Prefix"; backend.service = { name = gateName; port.name = "http"; };
        } ]; }) [ "*.${plan.domain}" plan.domain null ];
      } // (if tlsSecret == null then { } else { tls = [ { hosts = [ "*.${plan.domain}" plan.domain ]; secretName = tlsSecret; } ]; });
    }
    {
      # The landing route names no user: a client's header naming one is removed (an empty
      # value removes it), or another name would be that user's login page.
      apiVersion = "traefik.io/v1alpha1"; kind = "Middleware";
      metadata = m { } // { name = "${gateName}-landing"; };
      spec.headers.customRequestHeaders.${userHeader} = "";
    }
    {
      # A stopped workspace (no endpoints: Traefik's 503) shows the gate's starting page.
      apiVersion = "traefik.io/v1alpha1"; kind = "Middleware";
      metadata = m { } // { name = "${gateName}-wake"; };
      spec.errors = {
        status = [ "502-504" ];
        service = { name = gateName; port = "http"; };
        query = plan.gate.paths.wake;
      };
    }
  ];
in
if tooLarge then
  throw "code-server-multi: invalid settings:\n  - the plan of ${toString (builtins.length users)} users is ${toString (stringLength planJson)} bytes, more than a ConfigMap holds (1 MiB) for `csm kube render`; give each group of about 60 users its own settings and namespace"
else {
  inherit objects port;
  wake = "${gateName}-wake";
  podLabels = labels;
}

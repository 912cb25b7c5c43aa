# kube.nix's objects for one user of the plan: a StatefulSet of one replica (0 when
# the front door stops it for idleness), its Service, a PersistentVolumeClaim of the
# disk quota's size, a NetworkPolicy, a Traefik Middleware naming the user to the
# gate, and two Ingresses (the workspace behind the gate; the gate's own pages).
{ plan, contract, labelsOf, objectName, gateName, gate, peers, userHeader, imagePullPolicy }:
let
  inherit (builtins) concatStringsSep dirOf elem elemAt filter genList head
    length listToAttrs map match attrNames stringLength substring toJSON;

  volumeMount = "/data";    # where the init container sees the whole volume
  cpuRequest = "100m";      # what the scheduler reserves: idle people cost (almost) nothing
  # The z2jh default: the internet, never the cluster's or other private ranges.
  privateRanges = [ "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" "169.254.0.0/16" "100.64.0.0/10" ];
  inherit (peers) ingressController dns;

  # "--health-interval=30s" of the plan's podman options -> 30
  podmanSeconds = c: flag: let m = filter (m: m != null) (map (match "--${flag}=([0-9]+)s?") c.extraOptions);
    in builtins.fromJSON (head (head m));
  # code-server's own arguments, on TCP instead of the host's Unix socket.
  dropOptions = opts: xs: let go = i: if i >= length xs then [ ] else
      if elem (elemAt xs i) opts then go (i + 2) else [ (elemAt xs i) ] ++ go (i + 1); in go 0;
  relative = u: p: substring (stringLength u.disk.mountPoint + 1) (stringLength p) p;
  below = u: p: substring 0 (stringLength u.disk.mountPoint + 1) p == "${u.disk.mountPoint}/";
  volumeParts = v: let m = match "([^:]*):([^:]*)(:.*)?" v; in { host = elemAt m 0; container = elemAt m 1; };
  quote = s: "'${s}'";   # plan paths below the mount point hold no quote (plan.nix: plainCharsProblem)

  # The pod of a user's StatefulSet (tests/e2e/test_kube_play.py runs it as a Pod).
  podOf = u: name:
    let
      c = u.container;
      port = contract.port;
      disk = map volumeParts c.volumes;
      onDisk = filter (v: below u v.host) disk;
      owned = filter (d: below u d.path && d.uid == u.ids.hostUid) u.directories;
      seeds = u.seedFiles;
      prepare = concatStringsSep "\n" ([ "set -eu" ]
        ++ map (d: "mkdir -p ${quote "${volumeMount}/${relative u d.path}"} && chmod ${d.mode} ${quote "${volumeMount}/${relative u d.path}"}") owned
        ++ genList (i: let f = "${volumeMount}/${relative u (elemAt seeds i).path}"; in
          "[ -e ${quote f} ] || { printf '%s' \"$SEED_${toString i}\" > ${quote f} && chmod ${(elemAt seeds i).mode} ${quote f}; }") (length seeds));
      security = {
        allowPrivilegeEscalation = false;
        capabilities.drop = [ "ALL" ];
        runAsNonRoot = true;
      };
      resources = {
        limits = { memory = toString u.limits.memoryBytes; cpu = u.limits.cpus; };
        requests = { memory = toString u.limits.memorySoftBytes;
          cpu = if builtins.fromJSON u.limits.cpus < 0.1 then u.limits.cpus else cpuRequest; };
      };
      probe = { httpGet = { path = c.healthPath; port = "http"; }; timeoutSeconds = podmanSeconds c "health-timeout"; };
      pod = {
        hostname = u.name;
        hostUsers = false;              # a user namespace per pod (Kubernetes 1.33+, docs/kubernetes.md)
        automountServiceAccountToken = false;
        enableServiceLinks = false;
        securityContext = {
          runAsUser = contract.uid; runAsGroup = contract.gid; fsGroup = contract.gid;
          runAsNonRoot = true;
          seccompProfile.type = "RuntimeDefault";
        };
        volumes = [ { name = "home"; persistentVolumeClaim.claimName = name; } ];
        initContainers = [ {
          name = "prepare";
          image = plan.image;
          inherit imagePullPolicy;
          command = [ "sh" "-c" prepare ];
          env = genList (i: { name = "SEED_${toString i}"; value = (elemAt seeds i).content; }) (length seeds);
          securityContext = security;
          inherit resources;
          volumeMounts = [ { name = "home"; mountPath = volumeMount; } ];
        } ];
        containers = [ {
          name = "code-server";
          image = plan.image;
          inherit imagePullPolicy;
          args = dropOptions [ "--socket" "--socket-mode" ] c.cmd ++ [ "--bind-addr" "0.0.0.0:${toString port}" ];
          env = map (n: { name = n; value = c.environment.${n}; }) (attrNames c.environment);
          envFrom = genList (i: { secretRef.name = "${name}-env-${toString i}"; }) (length c.environmentFiles);
          ports = [ { name = "http"; containerPort = port; protocol = "TCP"; } ];
          inherit resources;
          securityContext = security;
          volumeMounts = map (v: { name = "home"; mountPath = v.container; subPath = relative u v.host; }) onDisk;
          startupProbe = probe // { periodSeconds = 5; failureThreshold = plan.idle.healthTimeoutSeconds / 5; };
          livenessProbe = probe // { periodSeconds = podmanSeconds c "health-interval"; failureThreshold = podmanSeconds c "health-retries"; };
          readinessProbe = probe // { periodSeconds = 5; };
        } ];
      };
    in pod;

  objects = { u, namespace, meta, tlsSecret }:
    let
      name = objectName u.name u.container.name;
      labels = labelsOf u.name;
      m = extra: (meta name extra) // { labels = labels; };
      pod = podOf u name;
      port = contract.port;
      middlewares = n: concatStringsSep "," (map (x: "${namespace}-${x}@kubernetescrd") n);
      ingress = suffix: path: service: mws: {
        apiVersion = "networking.k8s.io/v1"; kind = "Ingress";
        metadata = m { annotations."traefik.ingress.kubernetes.io/router.middlewares" = middlewares mws; } // { name = "${name}${suffix}"; };
        spec = {
          ingressClassName = "traefik";
          rules = [ { host = u.hostname; http.paths = [ {
            inherit path; pathType = "Prefix";
            backend.service = { name = service; port.name = "http"; };
          } ]; } ];
        } // (if tlsSecret == null then { } else { tls = [ { hosts = [ u.hostname ]; secretName = tlsSecret; } ]; });
      };
    in [
      {
        apiVersion = "v1"; kind = "PersistentVolumeClaim";
        metadata = m { };
        spec = { accessModes = [ "ReadWriteOnce" ]; resources.requests.storage = toString u.disk.quotaBytes; };
      }
      {
        apiVersion = "v1"; kind = "Service";
        metadata = m { };
        spec = { selector = labels; ports = [ { name = "http"; inherit port; targetPort = "http"; protocol = "TCP"; } ]; };
      }
      {
        apiVersion = "apps/v1"; kind = "StatefulSet";
        # What the cluster enforces elsewhere: the front door's idle stop, the kubelet's podPidsLimit.
        metadata = m { annotations = {
          "code-server-multi/pids-limit" = toString u.limits.pids;
        } // (if u.idle.stopAfterSeconds == null then { } else {
          "code-server-multi/idle-stop-after-seconds" = toString u.idle.stopAfterSeconds;
        }); };
        # No replicas: created with Kubernetes' default (1), then the gate owns it (0 when
        # idle), so applying the render again wakes nobody and conflicts with no one.
        spec = {
          serviceName = name;
          selector.matchLabels = labels;
          template = { metadata.labels = labels; spec = pod; };
        };
      }
      {
        apiVersion = "networking.k8s.io/v1"; kind = "NetworkPolicy";
        metadata = m { };
        spec = {
          podSelector.matchLabels = labels;
          policyTypes = [ "Ingress" "Egress" ];
          # Traefik, and the gate asking code-server's heartbeat.
          ingress = [ { from = [ ingressController { podSelector.matchLabels = gate.podLabels; } ];
                        ports = [ { port = "http"; protocol = "TCP"; } ]; } ];
          egress = [
            { to = [ dns ]; ports = [ { port = 53; protocol = "UDP"; } { port = 53; protocol = "TCP"; } ]; }
            { to = [ { ipBlock = { cidr = "0.0.0.0/0"; except = privateRanges; }; }
                     { ipBlock = { cidr = "::/0"; except = [ "fc00::/7" "fe80::/10" ]; }; } ]; }
          ];
        };
      }
      {
        apiVersion = "traefik.io/v1alpha1"; kind = "Middleware";
        metadata = m { };
        spec.headers.customRequestHeaders.${userHeader} = u.name;   # never the client's
      }
      (ingress "" "/" name [ name gate.wake gateName ])
      (ingress "-gate" plan.gate.paths.prefix gateName [ name ])
    ];
in
{
  objects = args: if args.u.disk.quotaBytes == null
    then throw "code-server-multi: invalid settings:\n  - users.${args.u.name}.diskQuota is null (no limit), but a Kubernetes volume needs a size; set users.${args.u.name}.diskQuota (e.g. \"20G\") for `csm kube render`"
    else objects args;
  secrets = u: let name = objectName u.name u.container.name; in
    genList (i: {
      name = "${name}-env-${toString i}";
      what = "users.${u.name}.environmentFiles entry ${toString i}";
      fromEnvFile = elemAt u.container.environmentFiles i;
    }) (length u.container.environmentFiles);
  notes = u: map (v: "users.${u.name}.extraVolumes ${toJSON v} is a host directory and is not rendered: on a cluster give such data as a PersistentVolumeClaim mounted read-only")
    (filter (v: !(below u (volumeParts v).host) && (volumeParts v).container != dirOf u.container.socket) u.container.volumes);
}

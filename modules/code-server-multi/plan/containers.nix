# Each user's container and what it needs on the host: uid map, directories, the
# seeded VS Code settings, disk, limits, its own network, and podman's arguments.
{ lib, cfg, gate }:
let
  inherit (builtins) toJSON;
  inherit (lib) numberText optionalAttrs parseSize;
  inherit (cfg) s users opencode vscodeSettings idRangeSize idBaseOf diskSettingOf;

  # What the image and the plan must agree on, written once for both image recipes.
  contract = builtins.fromJSON (builtins.readFile ../../../image/contract.json);
  inherit (contract) home project extensionsDir;
  containerUid = contract.uid;  # the image's user
  containerGid = contract.gid;
  # code-server listens only on a Unix socket in a host directory that only root and
  # nginx's group can traverse (see gate.socketOf): no TCP port anywhere on the host.
  socketDirInContainer = "/run/code-server-multi";
  socketInContainer = "${socketDirInContainer}/code-server.sock";
  healthCheck = [ "curl" "-fsS" "-o" "/dev/null" "--unix-socket" socketInContainer "http://localhost${contract.healthPath}" ];

  # Each user's container on a network of its own: podman's `isolate` option drops
  # traffic between isolated networks, so no container reaches another's (by
  # address; with DNS off, not by name either). The internet and the host's
  # public side stay reachable through the bridge. podman picks a free subnet
  # (no fixed one here could be known not to clash with the host's own networks).
  networkOptions = [ "isolate=true" ];
  # On every container of the project: how the runner finds them all (departed users' too).
  userLabel = "io.code-server-multi.user";
  # podman restarts a container whose code-server died; on NixOS the container's
  # systemd unit does (virtualisation.oci-containers sets Restart=always), and
  # podman's --restart cannot be combined with the unit's --rm.
  restartPolicy = "always";

  # code-server's user data dir (settings, state) is in the home, so it persists.
  vscodeDataDir = ".local/share/code-server";
  vscodeUserDir = "${vscodeDataDir}/User";
  vscodeUserDirs = [ ".local" ".local/share" vscodeDataDir vscodeUserDir ];
in
rec {
  inherit userLabel;
  opencodeConfig = {
    "$schema" = "https://opencode.ai/config.json";
    autoupdate = false;
    share = "disabled";
  }
  // optionalAttrs (opencode.provider != { }) { inherit (opencode) provider; }
  // optionalAttrs (opencode.model != null) { inherit (opencode) model; }
  // optionalAttrs (!opencode.allowFreeProvider) { disabled_providers = [ "opencode" ]; }
  // opencode.extraConfig;

  # The parts of plan.users.<name> about the container and its host side.
  forUser = name:
    let
      u = users.${name};
      idBase = idBaseOf name;
      hostUid = idBase + containerUid;
      hostGid = idBase + containerGid;
      userDir = "${s.workspaceBase}/${name}";
      # Only root and nginx's group traverse socketGuard. Inside it: the directory the
      # container's code-server creates its socket in (mounted at socketDirInContainer,
      # the user's own: they could put anything there, a link to another's socket too),
      # Root's hard link to that socket, made once root has checked it is one
      # (csm/sockets.py), lies in gate.socketLinks; nginx and root connect only to the link.
      socketGuard = "${s.runtimeDir}/users/${name}";
      socketDir = "${socketGuard}/code-server";
      memory = parseSize u.memoryLimit;
      memorySoft = parseSize u.memorySoftLimit;
      cpus = numberText u.cpuLimit;
      network = "${s.namePrefix}-${name}";
      owned = path: { inherit path; uid = hostUid; gid = hostGid; mode = "0700"; };
    in {
      socketSource = "${socketDir}/code-server.sock";
      ids = { base = idBase; size = idRangeSize; inherit hostUid hostGid containerUid; };
      directories = [
        # Traversable, not listable: the container's mapped root must reach the mounts.
        { path = userDir; uid = 0; gid = 0; mode = "0711"; }
        (owned "${userDir}/workspace")
        (owned "${userDir}/config")
        (owned "${userDir}/config/project")   # mount point of the workspace inside the home
      ] ++ map (d: owned "${userDir}/config/${d}") vscodeUserDirs ++ [
        { path = socketGuard; uid = 0; gid = gate.plan.proxyGroup; mode = "0710"; }
        ((owned socketDir) // { mode = "0711"; })
      ];
      # Written only where missing, so a person's own changes are kept.
      seedFiles = [
        ((owned "${userDir}/config/${vscodeUserDir}/settings.json") // { mode = "0600"; content = toJSON vscodeSettings; })
      ];
      # quotaBytes null: no quota, the directory is a plain one on the host's disk
      # (unless the image exists from an earlier quota: it stays in use).
      disk = {
        quotaBytes = let q = diskSettingOf name; in if q == null then null else parseSize q;
        image = "${s.workspaceBase}/.disks/${name}.ext4";
        mountPoint = userDir;
      };
      limits = { memoryBytes = memory; memorySoftBytes = memorySoft; inherit cpus; pids = u.pidsLimit; };
      # Created before the container (`podman network create` + createOptions),
      # removed with it.
      network = {
        name = network;
        unit = "podman-network-${network}.service";   # NixOS: the oneshot that creates it
        createOptions = map (o: "--opt=${o}") networkOptions ++ [ "--disable-dns" ];
      };
      container = {
        name = "${s.namePrefix}-${name}";
        # NixOS: the unit virtualisation.oci-containers makes for it (podman backend).
        unit = "podman-${s.namePrefix}-${name}.service";
        inherit (s) image;
        ports = [ ];
        volumes = [ "${userDir}/config:${home}" "${userDir}/workspace:${project}" "${socketDir}:${socketDirInContainer}" ] ++ u.extraVolumes;
        # CSM_LOGOUT_PATH: where the image's "Log out" item sends the browser (the gate's page).
        environment = { OPENCODE_CONFIG_CONTENT = toJSON opencodeConfig; CSM_LOGOUT_PATH = gate.paths.logout; };
        environmentFiles = u.environmentFiles;
        user = "${toString containerUid}:${toString containerGid}";
        cmd = [
          "code-server"
          # The gate in front checks passwords; only root and nginx reach the socket.
          "--socket" socketInContainer
          "--socket-mode" "666"
          "--auth" "none"
          "--disable-telemetry"
          "--disable-update-check"
          "--disable-workspace-trust"
          "--disable-getting-started-override"
          # Outside the bind-mounted home, so extensions baked into the image stay visible.
          "--extensions-dir" extensionsDir
          "--user-data-dir" "${home}/${vscodeDataDir}"
          project
        ];
        inherit healthCheck;
        socket = socketInContainer;   # where the idle check counts connections
        inherit (contract) healthPath;
        healthTimeoutSeconds = 180;   # a (re)started container's time to pass it
        labels = { ${userLabel} = name; };
        # The runner's `podman run --restart`; NixOS restarts through systemd.
        restart = restartPolicy;
        extraOptions = [
          "--network=${network}"
          "--hostname=${name}"
          "--label=${userLabel}=${name}"
          "--memory=${toString memory}"
          "--memory-reservation=${toString memorySoft}"
          "--memory-swap=${toString memory}"   # equal to --memory: no escape into swap
          "--cpus=${cpus}"
          "--pids-limit=${toString u.pidsLimit}"
          "--cap-drop=all"
          "--security-opt=no-new-privileges"
          "--uidmap=0:${toString idBase}:${toString idRangeSize}"
          "--gidmap=0:${toString idBase}:${toString idRangeSize}"
          "--health-cmd=${toJSON healthCheck}"  # JSON: exec form, no shell in between
          "--health-interval=30s"
          "--health-timeout=5s"
          "--health-retries=3"
          "--health-start-period=60s"
        ];
      };
    };
}

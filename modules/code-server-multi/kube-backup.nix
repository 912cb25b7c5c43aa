# kube.nix's backups (plan.backup.enable): one claim for the archives and, per user,
# a CronJob on plan.backup.schedule (kube-schedule.nix) that archives the user's
# claim, mounted read-only, into <user>/<timestamp>.tar.gz on it, in the format of
# `csm backup` (so `csm restore` reads it), and keeps the newest plan.backup.keep.
# The pods have no network (only the namespace's default deny selects them) and the
# restricted profile's hardening. docs/kubernetes.md "Backups" has the restore.
{ plan, contract, meta, labelsOf, objectName, imagePullPolicy }:
let
  inherit (builtins) attrNames baseNameOf dirOf filter foldl' map toJSON;

  backup = plan.backup;
  cron = import ./kube-schedule.nix backup.schedule;
  claim = "${plan.namePrefix}-backups";
  archives = "/backups";          # the backups claim, in the pod
  snapshot = "/snapshot";         # the user's claim is mounted at /snapshot/<user>
  users = map (n: plan.users.${n}) (attrNames plan.users);
  # Room for `keep` archives of every user's full disk (gzip makes them smaller), and
  # the one being written: the oldest is pruned only after it is complete.
  size = foldl' (a: u: a + u.disk.quotaBytes * (backup.keep + 1)) 0 users;

  # The backup pods' own labels: never the user's (the gate counts the pods with
  # app.kubernetes.io/instance=<user>, the user's NetworkPolicy opens those).
  labelsOfBackup = u: {
    "app.kubernetes.io/name" = "code-server-multi-backup";
    "app.kubernetes.io/part-of" = "code-server-multi";
    "app.kubernetes.io/component" = "backup";
    "code-server-multi/backup-of" = u.name;
  };
  # csm/runner/backup.py's manifest. The owners in the archive are the container's
  # own (uid contract.uid), so its id range starts at 0; `csm restore` on a host
  # shifts them into the user's range there.
  manifest = u: toJSON {
    format = "code-server-multi-backup";
    version = 1;
    domain = plan.domain;
    users.${u.name} = { idBase = 0; idSize = u.ids.size; };
  };
  # The top directories of the user's claim (workspace, config): nothing else is
  # archived (a filesystem's lost+found is root's and unreadable here).
  tops = u: map (d: baseNameOf d.path) (filter (d: dirOf d.path == u.disk.mountPoint) u.directories);

  # GNU tar, find, gzip, date and coreutils from the user's image (image/default.nix,
  # and Debian's essential packages in the portable one). Archives are written beside
  # the others and renamed when complete (a failed run removes its part); fifos and
  # sockets are left out (`csm restore` refuses them). The files are read while the
  # workspace may run: a directory removed or unreadable while listed, and tar's status
  # 1 (a file changed while read), are warnings.
  script = ''
    set -eu
    umask 077
    user="$CSM_BACKUP_USER"
    dir=${archives}/"$user"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$dir"
    rm -rf "$dir"/.partial-*
    if [ ! -d ${snapshot}/"$user"/"$1" ]; then
      echo "$user has no files yet (${snapshot}/$user/$1 is missing): nothing to back up"
      exit 0
    fi
    work="$dir/.partial-$stamp"
    trap 'rm -rf "$work"' EXIT
    mkdir "$work"
    printf '%s,"created":"%s"}\n' "''${CSM_BACKUP_MANIFEST%\}}" "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" \
      > "$work/code-server-multi-backup.json"
    cd ${snapshot}
    printf '%s\0' "$user" > "$work/list"
    for top in "$@"; do
      find "$user/$top" -ignore_readdir_race ! -type p ! -type s -print0 >> "$work/list" \
        || echo "warning: some of $user/$top could not be listed (unreadable, or changed meanwhile): left out" >&2
    done
    status=0
    tar -c -z -f "$work/archive.tar.gz" --format=posix --numeric-owner --ignore-failed-read \
      --no-recursion -C "$work" code-server-multi-backup.json -C ${snapshot} --null -T "$work/list" || status=$?
    [ "$status" -le 1 ] || { echo "tar failed (status $status): no archive written" >&2; exit "$status"; }
    mv "$work/archive.tar.gz" "$dir/$stamp.tar.gz"
    echo "wrote $dir/$stamp.tar.gz"
    ls -1 "$dir" | grep -E '^[0-9]{8}T[0-9]{6}Z\.tar\.gz$' | sort -r | tail -n +$((CSM_BACKUP_KEEP + 1)) |
      while read -r old; do rm -f "$dir/$old" && echo "removed $old (keeping the newest $CSM_BACKUP_KEEP)"; done
  '';

  cronJob = u: let
    userClaim = objectName u.name u.container.name;
    name = objectName u.name "${u.container.name}-backup";
  in {
    apiVersion = "batch/v1"; kind = "CronJob";
    metadata = (meta name { }) // { labels = labelsOfBackup u; };
    spec = (if cron.timeZone == null then { } else { inherit (cron) timeZone; }) // {
      inherit (cron) schedule;
      concurrencyPolicy = "Forbid";
      # A run missed (the cluster was down) still starts within 6 hours, like the
      # NixOS timer's Persistent=true.
      startingDeadlineSeconds = 21600;
      successfulJobsHistoryLimit = 1;
      failedJobsHistoryLimit = 3;
      jobTemplate.spec = {
        backoffLimit = 2;
        activeDeadlineSeconds = 14400;
        template = {
          metadata.labels = labelsOfBackup u;
          spec = {
            restartPolicy = "Never";
            hostUsers = false;
            automountServiceAccountToken = false;
            enableServiceLinks = false;
            securityContext = {
              runAsUser = contract.uid; runAsGroup = contract.gid; fsGroup = contract.gid;
              fsGroupChangePolicy = "OnRootMismatch";
              runAsNonRoot = true;
              seccompProfile.type = "RuntimeDefault";
            };
            # Beside the user's pod when it runs: a ReadWriteOnce volume is attached to
            # one node at a time (local-path volumes are bound to theirs anyway).
            affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution = [ {
              weight = 100;
              podAffinityTerm = { labelSelector.matchLabels = labelsOf u.name; topologyKey = "kubernetes.io/hostname"; };
            } ];
            volumes = [
              { name = "home"; persistentVolumeClaim = { claimName = userClaim; readOnly = true; }; }
              { name = "backups"; persistentVolumeClaim.claimName = claim; }
            ];
            containers = [ {
              name = "backup";
              image = plan.image;
              inherit imagePullPolicy;
              command = [ "sh" "-c" script "backup" ];
              args = tops u;
              env = [
                { name = "CSM_BACKUP_USER"; value = u.name; }
                { name = "CSM_BACKUP_KEEP"; value = toString backup.keep; }
                { name = "CSM_BACKUP_MANIFEST"; value = manifest u; }
              ];
              resources = {
                limits = { memory = "256Mi"; cpu = "500m"; };
                requests = { memory = "64Mi"; cpu = "50m"; };
              };
              securityContext = {
                allowPrivilegeEscalation = false;
                capabilities.drop = [ "ALL" ];
                runAsNonRoot = true;
                readOnlyRootFilesystem = true;
              };
              volumeMounts = [
                { name = "home"; mountPath = "${snapshot}/${u.name}"; readOnly = true; }
                { name = "backups"; mountPath = archives; }
              ];
            } ];
          };
        };
      };
    };
  };
in
if !backup.enable then { objects = [ ]; notes = [ ]; } else {
  objects = [ {
    apiVersion = "v1"; kind = "PersistentVolumeClaim";
    metadata = meta claim { };
    spec = { accessModes = [ "ReadWriteOnce" ]; resources.requests.storage = toString size; };
  } ] ++ map cronJob users;
  notes = [
    "backup.target ${toJSON backup.target} is a host directory and is not used: on a cluster the archives go to the PersistentVolumeClaim ${claim} (<user>/<timestamp>.tar.gz); copy them off the cluster as docs/kubernetes.md says"
  ] ++ (if cron.timeZone == null then [
    "backup.schedule ${toJSON backup.schedule} runs as \"${cron.schedule}\" in the kube-controller-manager's time zone (on k3s the server's local zone, elsewhere usually UTC), where systemd uses the host's; add a zone to it (e.g. \"*-*-* 03:00:00 Europe/Berlin\") to fix the hour"
  ] else [ ]);
}

# Sourced by images/*.sh and read by the images tests: podman and buildah without a daemon, as they run on CI here
# (a machine that may itself be a container).
# - runc, not crun: Debian bookworm's crun cannot run under hybrid cgroups ("cgroups in hybrid mode not supported");
# - cgroupfs, not systemd: there is no systemd session to ask for a scope;
# - buildah with chroot isolation and the host's network: no user namespaces or network set-up are needed to build.
# Storage is the default (/var/lib/containers/storage for root), so `podman images` shows what was built.
OCI_RUNTIME=${OCI_RUNTIME:-$(command -v runc || command -v crun || echo runc)}
podman_() { podman --runtime "$OCI_RUNTIME" --cgroup-manager cgroupfs "$@"; }
buildah_bud() { buildah bud --isolation chroot --format docker --layers "$@"; }
# A container's default limits (containers.conf: nofile 1048576) can exceed what this process may raise its own to
# ("setrlimit RLIMIT_NOFILE: Operation not permitted" inside another container): run with the caller's hard limit
# for files, and at most 8192 processes (runc could not set this machine's own hard limit of processes, 96367).
# No health-check timers: podman would ask systemd for them, and `podman healthcheck run` works without.
podman_run() {
  local files procs
  files=$(ulimit -Hn)
  procs=$(ulimit -Hu)
  if [ "$procs" = unlimited ] || [ "$procs" -gt 8192 ]; then procs=8192; fi
  podman_ run --health-interval disable --ulimit "nofile=$files:$files" --ulimit "nproc=$procs:$procs" "$@"
}

# Escape attempts, run INSIDE an agent container (python3 - '<json params>').
# Prints one JSON line: [{"attempt", "blocked", "evidence"}]. "blocked" is decided here from
# what the attempt observed; the test asserts every attempt is blocked and that the control
# attempts (which must succeed) did.
import ctypes, ctypes.util, errno, json, os, socket, subprocess, sys

P = json.loads(sys.argv[1])
results = []


def record(attempt, blocked, evidence):
    results.append({"attempt": attempt, "blocked": bool(blocked), "evidence": str(evidence)[:300]})


def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("pwned")
        return False, "wrote " + path
    except OSError as e:
        return True, "%s: %s" % (path, e.strerror)


for target in ["/pwned", "/etc/pwned", "/usr/pwned", "/etc/passwd"]:
    record("write " + target, *try_write(target))

# Host files: the container sees its own root, and no host path is mounted.
host_shadow_prefix = P.get("hostShadowPrefix", "")
for path in ["/etc/shadow", "/proc/1/root/etc/shadow", "/host/etc/shadow"]:
    try:
        data = open(path).read()
        record("read host " + path, host_shadow_prefix == "" or host_shadow_prefix not in data, "read %d bytes, host shadow line %s" % (len(data), "present" if host_shadow_prefix and host_shadow_prefix in data else "absent"))
    except OSError as e:
        record("read host " + path, True, e.strerror)

# Another agent's /data: not mounted here; other containers' processes are not visible.
secret = P["neighbourSecret"]
found = []
# Every writable or mountable place (the image's own /usr is the image, identical for all agents).
walk = [(r, d, f) for top in ("/data", "/tmp", "/mnt", "/media", "/home", "/root", "/var", "/srv", "/opt", "/run", "/etc", "/host") for (r, d, f) in os.walk(top)]
for root, dirs, files in walk:
    for name in files:
        try:
            if secret in open(os.path.join(root, name), errors="ignore").read(1 << 16):
                found.append(os.path.join(root, name))
        except OSError:
            pass
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        if secret in open("/proc/%s/root/data/secret" % pid).read():
            found.append("/proc/%s/root/data/secret" % pid)
    except OSError:
        pass
record("read another agent's /data", not found, "found in %s" % found if found else "secret not readable anywhere")

# setuid: a setuid-root python in the image must not give euid 0 (no-new-privileges).
if os.path.exists("/usr/local/bin/suidpy"):
    out = subprocess.run(["/usr/local/bin/suidpy", "-c", "import os;print(os.geteuid())"], capture_output=True, text=True)
    record("setuid-root binary", out.stdout.strip() != "0", "euid=%s %s" % (out.stdout.strip(), out.stderr.strip()[:80]))

# chmod u+s in /tmp: the agent may set the bit on its own file (it owns it), so the outcome is
# whether a setuid file in /tmp could ever run with its bit honoured: blocked when the chmod is
# refused, /tmp is mounted nosuid (the kernel ignores the bit at exec), or executing from /tmp
# is refused (noexec). gVisor 20221219 does not track nosuid (its mountinfo shows only noexec)
# and ignores setuid bits altogether; there the exec refusal is what this row checks.
# (A setuid-ROOT copy cannot be made here at all: no CAP_CHOWN, no CAP_FSETID.)
def mount_options(path):
    found = set()
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == path:
            # Per-mount options (field 6) and, after the "-" separator, the superblock's; the
            # last line for a path is the mount on top.
            found = set(fields[5].split(",")) | set(fields[fields.index("-") + 3].split(","))
    return found


try:
    with open("/tmp/suid-x", "w") as f:
        f.write("#!/bin/sh\nid -u\n")
    os.chmod("/tmp/suid-x", 0o4755)
    bit = bool(os.stat("/tmp/suid-x").st_mode & 0o4000)
    opts = mount_options("/tmp")
    exec_refused = False
    try:
        ran = subprocess.run(["/tmp/suid-x"], capture_output=True, text=True, timeout=10)
        exec_result = "exec exit %d: %s" % (ran.returncode, (ran.stdout + ran.stderr).strip()[:60])
    except OSError as e:
        exec_refused = True
        exec_result = "exec refused: %s" % e.strerror
    record("chmod u+s in /tmp", not bit or "nosuid" in opts or exec_refused, "setuid bit %s; /tmp mounted %s; %s" % ("set" if bit else "not set", ",".join(sorted(o for o in opts if o in ("nosuid", "noexec", "nodev", "rw", "ro"))) or "(no options?)", exec_result))
except OSError as e:
    record("chmod u+s in /tmp", True, "refused: %s" % e.strerror)

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

# Dropped capabilities. The sets themselves: effective, permitted and bounding all empty (a
# bounding set with a bit left would let a setuid or file-capability binary regain it).
caps = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith("Cap"))
caps = {k: v.strip() for k, v in caps.items()}
record("capability sets (CapEff, CapPrm, CapBnd)", all(int(caps.get(k, "1"), 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd")), " ".join("%s=%s" % kv for kv in sorted(caps.items())))
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    record("raw socket (CAP_NET_RAW)", False, "opened a raw socket")
except OSError as e:
    record("raw socket (CAP_NET_RAW)", True, e.strerror)
try:
    open("/tmp/owned", "w").close()
    os.chown("/tmp/owned", 0, 0)
    record("chown to root (CAP_CHOWN)", False, "chowned")
except OSError as e:
    record("chown to root (CAP_CHOWN)", True, e.strerror)
os.makedirs("/tmp/mnt", exist_ok=True)
rc = libc.mount(b"none", b"/tmp/mnt", b"tmpfs", 0, None)
record("mount tmpfs (CAP_SYS_ADMIN)", rc != 0, "rc=%d errno=%s" % (rc, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())))
rc = libc.unshare(0x10000000)  # CLONE_NEWUSER then mount would be the classic trick
record("unshare user namespace", rc != 0, "rc=%d errno=%s" % (rc, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())))
# PTRACE_SEIZE, not PTRACE_ATTACH: the same permission check, but ATTACH also sends the
# target a SIGSTOP, and a DETACH issued before the target has stopped fails, which leaves it
# stopped for good. Seen here: the agent's own init (its job runner) stopped and the test hung.
PTRACE_SEIZE = 0x4206
PTRACE_DETACH = 17


def ptrace(pid):
    rc = libc.ptrace(PTRACE_SEIZE, pid, None, None)
    err = ctypes.get_errno()
    comm = ""
    try:
        comm = open("/proc/%d/comm" % pid).read().strip()
    except OSError:
        pass
    if rc == 0:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    return rc, "rc=%d errno=%s target here: %r" % (rc, errno.errorcode.get(err, err) if rc != 0 else "-", comm or "no such process")


# Processes outside the agent: the platform (host pid) and the neighbour agent (its host pid).
# Blocked when the attach fails; in a private pid namespace those pids name nothing (ESRCH) or
# one of our own processes, which the comm check tells apart.
for label, pid in [("ptrace the platform process (host pid %d)" % P["hostPid"], P["hostPid"]), ("ptrace the neighbour agent (host pid %d)" % P["neighbourHostPid"], P["neighbourHostPid"])]:
    rc, evidence = ptrace(pid)
    mine = False
    try:
        mine = os.stat("/proc/%d" % pid).st_uid == os.getuid()
    except OSError:
        pass
    record(label, rc != 0 or mine, evidence + (" (a process of this agent with the same number)" if rc == 0 and mine else ""))
# Not an escape, reported for completeness: Linux lets a process trace its own uid's processes
# without CAP_SYS_PTRACE (this kernel has no Yama); gVisor refuses.
rc, evidence = ptrace(1)
results.append({"attempt": "INFO ptrace own init (pid 1, same uid, same container)", "info": True, "evidence": evidence})

# Host processes: our pid namespace holds only the agent's own processes.
comms = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        comms.append(open("/proc/%s/comm" % pid).read().strip())
    except OSError:
        pass
host_like = [c for c in comms if c in ("dockerd", "containerd", "node", "systemd", "sshd", "postgres", "redis-server", "init")]
record("see host processes", not host_like and len(comms) < 20, "%d processes: %s" % (len(comms), sorted(set(comms))))

# Docker and containerd sockets: absent, and nothing answers at any of the usual paths.
SOCKETS = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock",
           "/run/containerd/containerd.sock.ttrpc", "/run/docker/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock",
           "/var/run/docker/containerd/containerd-debug.sock", "/run/user/1000/docker.sock", "/run/podman/podman.sock"]
for path in SOCKETS:
    if not os.path.exists(path):
        record("docker/containerd socket " + path, True, "absent")
        continue
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.settimeout(2)
    try:
        u.connect(path)
        record("docker/containerd socket " + path, False, "exists and accepts connections")
    except OSError as e:
        record("docker/containerd socket " + path, True, "exists, connect: %s" % (e.strerror or e))
    finally:
        u.close()


def tcp(host, port, timeout=2.0, payload=b""):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        if payload:
            s.sendall(payload)
        data = s.recv(200)
        return True, data.decode("latin1", "replace")
    except OSError as e:
        return False, "%s" % (e.strerror or e)
    finally:
        s.close()


def via_proxy(target):
    proxy = P.get("proxy")
    if not proxy:
        return None, "no proxy"
    host, port = proxy
    ok, data = tcp(host, port, 5.0, ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    return ok and " 200 " in data.split("\r\n")[0], data.split("\r\n")[0] if ok else data


def direct_and_proxied(name, host, port):
    ok, data = tcp(host, port)
    record(name + " direct", not ok, data if not ok else "connected: %r" % data[:60])
    if P.get("proxy"):
        allowed, line = via_proxy("%s:%d" % (host, port))
        record(name + " via proxy", not allowed, line)


gw = P.get("gateway")
# The Docker API over TCP (a daemon started with -H tcp://0.0.0.0:2375, or 2376 with TLS): on
# the gateway and every address of the host. The test runs a stand-in answering like dockerd
# on 0.0.0.0:2375/2376 (checked from the host), so these targets are live.
for host in dict.fromkeys(([gw] if gw else []) + P.get("hostAddresses", [])):
    for port in (2375, 2376):
        ok, data = tcp(host, port, 2.0, b"GET /version HTTP/1.0\r\n\r\n")
        record("Docker API tcp %s:%d" % (host, port), not ok or "ApiVersion" not in data, data[:80] if ok else data)
if gw:
    direct_and_proxied("platform API %s:%d" % (gw, P["apiPort"]), gw, P["apiPort"])
    direct_and_proxied("host service on 0.0.0.0 (%s:%d)" % (gw, P["hostAnyPort"]), gw, P["hostAnyPort"])
if P.get("neighbourIp"):
    direct_and_proxied("another agent %s:%d" % (P["neighbourIp"], 8000), P["neighbourIp"], 8000)
direct_and_proxied("metadata 169.254.169.254:80", "169.254.169.254", 80)
ok, data = tcp("127.0.0.1", P["hostLoopbackPort"])
record("host loopback service 127.0.0.1:%d direct" % P["hostLoopbackPort"], not ok or P["hostLoopbackBanner"] not in data, data)
if P.get("proxy"):
    allowed, line = via_proxy("127.0.0.1:%d" % P["hostLoopbackPort"])
    record("host loopback service via proxy", not allowed, line)
    allowed, line = via_proxy("denied.test:%d" % P["hostLoopbackPort"])
    record("outside the allowlist (denied.test) via proxy", not allowed, line)
    ok, data = tcp(P["proxy"][0], P["proxy"][1], 5.0, ("GET http://denied.test:%d/ HTTP/1.1\r\nHost: denied.test:%d\r\n\r\n" % (P["hostLoopbackPort"], P["hostLoopbackPort"])).encode())
    record("outside the allowlist, plain HTTP via proxy", not (ok and " 200 " in data.split("\r\n")[0]), data.split("\r\n")[0])
    # Control: the listed destination works (so the denials above are the policy, not a broken network).
    allowed, line = via_proxy("allowed.test:%d" % P["hostLoopbackPort"])
    results.append({"attempt": "CONTROL allowlisted allowed.test via proxy", "control": True, "succeeded": bool(allowed), "evidence": line})

print(json.dumps(results))

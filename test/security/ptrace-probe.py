# ptrace of a process that only CAP_SYS_PTRACE may trace: a child of this very process, same
# uid, that has cleared its dumpable flag (prctl PR_SET_DUMPABLE 0, what ssh-agent and gpg-agent
# do to keep their keys). Linux then refuses a tracer without CAP_SYS_PTRACE (EPERM) even though
# the uids match and the target is our own child (no Yama here, and Yama allows descendants).
# Run inside an agent (the attempt) and in control containers with and without the capability.
# Also tries a dumpable sibling child: that one needs no capability, which shows ptrace itself
# works and the refusal above is the capability check. Prints one JSON line.
import ctypes, ctypes.util, errno, json, os, signal, time

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
PR_SET_DUMPABLE, PR_GET_DUMPABLE = 4, 3
# PTRACE_SEIZE, not PTRACE_ATTACH: the same permission check without stopping the target.
PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17


def attempt(dumpable):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if not dumpable:
                libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            os.write(w, str(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)).encode())
            time.sleep(30)
        finally:
            os._exit(0)
    os.close(w)
    flag = os.read(r, 8).decode()
    os.close(r)
    rc = libc.ptrace(PTRACE_SEIZE, pid, None, None)
    err = ctypes.get_errno()
    if rc == 0:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return {"attached": rc == 0, "errno": "-" if rc == 0 else errno.errorcode.get(err, str(err)), "targetDumpable": flag}


caps = {}
for line in open("/proc/self/status"):
    if line.startswith("Cap"):
        k, v = line.split(":")
        caps[k] = v.strip()
print(json.dumps({"nonDumpable": attempt(False), "dumpable": attempt(True), "uid": os.getuid(), "capEff": caps.get("CapEff", "?")}))

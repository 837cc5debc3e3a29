# DNS as a way out, run INSIDE an agent container (python3 - '<json params>'), for agents on the
# internal egress network and for agents with network none. Prints one JSON line like attacks.py.
#
# How a leak would show (this machine has no internet, so "resolves" alone proves nothing):
# - outsideName is a name the HOST's resolver answers (the test checks that from the host first):
#   an answer, or an NXDOMAIN, can only come from a resolver that looked it up, so any such reply
#   means the query left the container. Docker's embedded resolver (127.0.0.11) answers nothing
#   itself for outside names; when it cannot forward it stays silent (20.10) or says
#   SERVFAIL/REFUSED (newer Docker): both count as blocked.
# - on the gateway the test runs its own DNS responder (answering every name with
#   responderAddress): a reply from there is a leak through the host firewall.
# - the host's resolvers, asked directly: any reply at all is a leak.
import json, os, socket, struct, sys

P = json.loads(sys.argv[1])
# Short resolver timeouts for getaddrinfo (glibc reads RES_OPTIONS on first use): the attempt
# is the same, only the waiting is shorter.
os.environ["RES_OPTIONS"] = "timeout:2 attempts:1"
results = []
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def record(attempt, blocked, evidence):
    results.append({"attempt": attempt, "blocked": bool(blocked), "evidence": str(evidence)[:300]})


def query(name, server, tcp=False, timeout=3.0):
    """One A query; returns (rcode name, [addresses]) or (None, error text) when nothing answered."""
    qid = os.getpid() & 0xFFFF
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    try:
        if tcp:
            s = socket.create_connection((server, 53), timeout)
            s.settimeout(timeout)
            s.sendall(struct.pack(">H", len(msg)) + msg)
            data = s.recv(4096)[2:]
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            s.sendto(msg, (server, 53))
            data = s.recv(4096)
        s.close()
    except OSError as e:
        return None, "no answer: %s" % (e.strerror or e)
    if len(data) < 12:
        return "SHORT", []
    rcode = RCODES.get(data[3] & 0xF, str(data[3] & 0xF))
    addrs = []
    i = len(msg)  # the reply repeats our question: the answers start after it
    try:
        for _ in range(struct.unpack(">H", data[6:8])[0]):
            while data[i] != 0 and data[i] & 0xC0 != 0xC0:  # the owner name: labels ...
                i += data[i] + 1
            i += 2 if data[i] & 0xC0 == 0xC0 else 1  # ... ending in a pointer or the root
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[i : i + 10])
            i += 10
            if rtype == 1 and rdlen == 4:
                addrs.append(socket.inet_ntoa(data[i : i + 4]))
            i += rdlen
    except (IndexError, struct.error):
        addrs.append("(unparsed answer)")
    return rcode, addrs


def leaked_via_resolver(rcode, addrs):
    # An answer or a negative answer from upstream; silence, SERVFAIL and REFUSED are not.
    return rcode is not None and (addrs or rcode == "NXDOMAIN")


outside = P["outsideName"]
probe = P["probeName"]
for name in (outside, probe):
    try:
        infos = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)
        record("DNS getaddrinfo(%s)" % name, False, "resolved to %s" % sorted({i[4][0] for i in infos}))
    except socket.gaierror as e:
        # EAI_NONAME ("Name or service not known") is a resolver's NXDOMAIN: some resolver
        # answered. Blocked means nothing answered at all (EAI_AGAIN).
        record("DNS getaddrinfo(%s)" % name, e.errno != socket.EAI_NONAME, "gaierror %s" % (e.strerror or e))

resolv = open("/etc/resolv.conf").read() if os.path.exists("/etc/resolv.conf") else ""
listed = [l.split()[1] for l in resolv.splitlines() if l.startswith("nameserver") and len(l.split()) > 1]
# The embedded resolver (when the container lists it) and whatever else /etc/resolv.conf names.
for server in dict.fromkeys(listed + ["127.0.0.11"]):
    for tcp in (False, True):
        rcode, addrs = query(outside, server, tcp)
        record("DNS raw %s query to %s for %s" % ("TCP" if tcp else "UDP", server, outside), not leaked_via_resolver(rcode, addrs), "%s %s" % (rcode, addrs))

gw = P.get("gateway")
if gw:
    for tcp in (False, True):
        rcode, addrs = query(probe, gw, tcp)
        record("DNS raw %s query to the gateway %s:53" % ("TCP" if tcp else "UDP", gw), rcode is None, "%s %s" % (rcode, addrs))

for server in P.get("hostResolvers", []):
    for tcp in (False, True):
        rcode, addrs = query(outside, server, tcp)
        record("DNS raw %s query to the host's resolver %s" % ("TCP" if tcp else "UDP", server), rcode is None, "%s %s" % (rcode, addrs))

print(json.dumps(results))

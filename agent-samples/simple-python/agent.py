"""A small sample agent: says hello, reports where it runs, does an optional task, writes a result.

Environment:
  AGENT_ID        id the platform gave this agent (default "local")
  AGENT_DATA_DIR  where results go (default /data); skipped with a note when not writable
Arguments:
  agent.py [TASK...] [--sleep SECONDS] [--exit-code N]
  TASK words are echoed back as the task; --sleep keeps the agent running (it stops cleanly on
  SIGTERM); --exit-code makes it exit with N so restart policies can be exercised.
"""

import json
import os
import platform
import signal
import sys
import time


def parse_args(argv):
    task, sleep_s, exit_code = [], 0.0, 0
    it = iter(argv)
    for arg in it:
        if arg == "--sleep":
            sleep_s = float(next(it, "0"))
        elif arg == "--exit-code":
            exit_code = int(next(it, "0"))
        else:
            task.append(arg)
    return " ".join(task), sleep_s, exit_code


def write_result(data_dir, result):
    path = os.path.join(data_dir, "result.json")
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f)
            f.write("\n")
        return path
    except OSError as e:
        # A read-only root without a mounted volume is a normal way to run this agent.
        print(f"note: no result written ({e.strerror}: {data_dir})", flush=True)
        return None


def main(argv):
    task, sleep_s, exit_code = parse_args(argv)
    agent_id = os.environ.get("AGENT_ID", "local")
    print("Hello Agent", flush=True)
    print(f"agent id: {agent_id}", flush=True)
    print(f"python {platform.python_version()} uid={os.getuid()} gid={os.getgid()} "
          f"host={platform.node()}", flush=True)
    if task:
        print(f"task: {task}", flush=True)

    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    deadline = time.monotonic() + sleep_s
    while not stopped and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    if stopped:
        print("received SIGTERM, stopping", flush=True)

    result = {"agentId": agent_id, "task": task, "words": len(task.split()),
              "stoppedBySignal": bool(stopped), "finishedAt": time.time()}
    path = write_result(os.environ.get("AGENT_DATA_DIR", "/data"), result)
    if path:
        print(f"result written to {path}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""How many InvokeCommand calls per second the sandbox serves with faults off, over keep-alive HTTPS.

    .venv/bin/python bench/sandbox_throughput.py [--calls 2000] [--seconds 20] [--threads 1] [--subprocess]

Starts a sandbox on the bundled sample tenant (in this process, or with --subprocess as
`migrator sandbox serve`, so client and server do not share a GIL), gets a token with msal, then POSTs
`Get-Mailbox -Identity <one mailbox>` and `Get-RecipientPermission -Identity <one mailbox>` through one requests
Session per thread (one TLS connection each, reused). Bounded by --calls and --seconds. Prints one JSON line per
scenario; the target is >= 300 calls/s. In-process runs also report the server's CPU time per call (process CPU
minus the client threads' CPU), which other load on the machine does not distort.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import msal
import requests

from migrator.sandbox.server import start_sandbox


class _VerifyingSession(requests.Session):
    """REQUESTS_CA_BUNDLE overrides a Session's verify; a per-request verify wins (docs/design.md §7)."""

    def __init__(self, ca: str) -> None:
        super().__init__()
        self._ca = ca

    def request(self, method, url, **kwargs):
        kwargs["verify"] = self._ca
        return super().request(method, url, **kwargs)


def _run(sb, token: str, body: dict, calls: int, seconds: float, threads: int, in_process: bool) -> dict:
    done = [0] * threads
    errors = [0] * threads
    client_cpu = [0.0] * threads
    deadline = time.monotonic() + seconds
    per_thread = calls // threads

    def worker(i: int) -> None:
        cpu0 = time.thread_time()
        with _VerifyingSession(str(sb.ca_bundle)) as s:
            s.headers.update({"Authorization": f"Bearer {token}", "X-ResponseFormat": "json"})
            for _ in range(per_thread):
                if time.monotonic() > deadline:
                    break
                r = s.post(sb.invoke_url, json=body, timeout=30)
                if r.status_code != 200:
                    errors[i] += 1
                done[i] += 1
        client_cpu[i] = time.thread_time() - cpu0

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start, cpu_start = time.perf_counter(), time.process_time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    total = sum(done)
    out = {"calls": total, "errors": sum(errors), "seconds": round(elapsed, 3),
           "calls_per_second": round(total / elapsed, 1) if elapsed else None,
           "client_cpu_ms_per_call": round(sum(client_cpu) / total * 1000, 3)}
    if in_process:  # CPU time is robust to other load on the machine, wall time is not
        out["server_cpu_ms_per_call"] = round((cpu - sum(client_cpu)) / total * 1000, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per scenario (upper bound)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time limit per scenario")
    ap.add_argument("--threads", type=int, default=1, help="client threads (one keep-alive connection each)")
    ap.add_argument("--subprocess", action="store_true", help="run the server as `migrator sandbox serve`")
    args = ap.parse_args()
    if args.subprocess:
        proc = subprocess.Popen([sys.executable, "-m", "migrator", "sandbox", "serve"], stdout=subprocess.PIPE,
                                text=True)
        try:
            ready = json.loads(proc.stdout.readline())
            sb = SimpleNamespace(ca_bundle=ready["ca_bundle"], invoke_url=ready["invoke_url"],
                                 authority=ready["authority"], client_id=ready["client_id"],
                                 client_secret=ready["client_secret"])
            return _bench(sb, args, "subprocess")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    with start_sandbox(faults="none") as sb:
        return _bench(sb, args, "in-process")


def _bench(sb, args, mode: str) -> int:
    app = msal.ConfidentialClientApplication(sb.client_id, client_credential=sb.client_secret,
                                             authority=sb.authority, instance_discovery=False,
                                             http_client=_VerifyingSession(str(sb.ca_bundle)))
    token = app.acquire_token_for_client(["https://outlook.office365.com/.default"])["access_token"]
    with _VerifyingSession(str(sb.ca_bundle)) as s:
        one = s.post(sb.invoke_url, json={"CmdletInput": {"CmdletName": "Get-Mailbox",
                                                          "Parameters": {"ResultSize": 1}}},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["value"][0]
    scenarios = {
        "get-mailbox-one": {"CmdletInput": {"CmdletName": "Get-Mailbox",
                                            "Parameters": {"Identity": one["PrimarySmtpAddress"]}}},
        "get-recipientpermission-one": {"CmdletInput": {"CmdletName": "Get-RecipientPermission",
                                                        "Parameters": {"Identity": one["PrimarySmtpAddress"]}}},
    }
    _run(sb, token, scenarios["get-mailbox-one"], 50, 5, 1, False)  # warm-up
    for name, body in scenarios.items():
        result = _run(sb, token, body, args.calls, args.seconds, args.threads, mode == "in-process")
        print(json.dumps({"scenario": name, "server": mode, "threads": args.threads, **result, "target": 300,
                          "python": platform.python_version(), "cpus": os.cpu_count()}))
        if result["errors"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

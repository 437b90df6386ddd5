#!/usr/bin/env python3
"""Side-by-side relay benchmark: postern, Postfix and Exim on one box, in one run, interleaved.

Each repetition runs every scenario against every relay in turn, so drift on a shared machine
hits all of them alike. The load comes from Postfix's smtp-source (a tool we did not write);
the next hop is Postfix's smtp-sink. Exim 4 is the second peer: it is not installed
(Debian's mail servers conflict as packages) but unpacked from its Debian packages and run
from there by bench/exim-instance.sh; it is left out of the default --relays. The same runs
are repeated with postern-loadgen, whose report adds the ack latency. For each run it records
accepted messages/s (until the load generator is done), delivered messages/s (until the sink
has them all), the relay's CPU milliseconds per message, its peak resident memory, and for
postern the spool syncs per message (from /metrics). The report gives the median and the
spread (min-max) per scenario.

Usage (root, Debian packages postfix installed; `just bench` does both):
    bench/harness.py [--repeat 3] [--messages 20000] [--scenarios a,b,c]
                     [--relays postern,postfix,exim] [--load smtp-source|loadgen|both]
                     [--out bench/results/NAME.json] [--candidate BINARY]

Scenarios: a = 4 KiB, 50 sessions, a new connection per message; b = the same with connection
reuse; c = 100 KiB messages; d and e = (a) with Ed25519 or RSA-2048 DKIM signing of every message;
f = (a) over STARTTLS (postern-loadgen only: smtp-source speaks no TLS); g = open loop
(postern-loadgen only) at half of the closed-loop rate postern reached in b, for the ack latency.
`--candidate BINARY` adds a second postern build as the relay `candidate`, so that a change is
measured against the build before it in the same interleaved run (`--relays postern,candidate`).
`--load` picks smtp-source, postern-loadgen or both (the default), so their figures can be
compared. A relay not set up for a scenario's feature is reported as not configured for it: the
peers here sign nothing (Postfix and Exim need a DKIM milter or module we do not set up), Exim is
not given a certificate, Postfix gets the same certificate as postern for f.

Durability as configured here: postern acknowledges after the group commit's durable write;
Postfix fsyncs each queue file before its 250 (its normal setting), and Exim fsyncs its spool
files before its 250 (its normal setting too). Exim's CPU is read from a cgroup of its own,
because its delivery processes are not reaped by the daemon.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
POSTERN = ROOT / "target" / "release" / "postern"
LOADGEN = ROOT / "target" / "release" / "postern-loadgen"
POSTFIX_INSTANCE = ROOT / "bench" / "postfix-instance.sh"
EXIM_INSTANCE = ROOT / "bench" / "exim-instance.sh"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"

SCENARIOS = {
    "a": {"title": "4 KiB, 50 sessions, new connection per message", "size": 4096, "reuse": False},
    "b": {"title": "4 KiB, 50 sessions, connection reuse", "size": 4096, "reuse": True},
    "c": {"title": "100 KiB, 50 sessions, new connection per message", "size": 102400, "reuse": False},
    "d": {"title": "(a) with Ed25519 DKIM signing", "size": 4096, "reuse": False,
          "dkim": "ed25519-sha256"},
    "e": {"title": "(a) with RSA-2048 DKIM signing", "size": 4096, "reuse": False,
          "dkim": "rsa-sha256"},
    "f": {"title": "(a) over STARTTLS", "size": 4096, "reuse": False, "starttls": True,
          "tools": ["loadgen"]},
}
SKIPPED = {}
# The sender domain of both load tools, which the DKIM scenarios sign for.
SENDER = "bench@source.test"
SIGNING_DOMAIN = "source.test"
OPEN_LOOP = {"title": "open loop at half of postern's peak (b), 4 KiB, reused connections",
             "size": 4096, "reuse": True}
SESSIONS = 50
DRAIN_PATIENCE_S = 300


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, patience_s=20):
    deadline = time.time() + patience_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def cpu_seconds(pids, with_reaped_children=False):
    """utime + stime of these processes in seconds; with `with_reaped_children`, also the
    time of the children they have waited for (cutime + cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            if with_reaped_children:
                total += int(fields[13]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def peak_rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Sink:
    """smtp-sink on a free port, with its running counters in a file."""

    def __init__(self, work):
        self.port = free_port()
        self.output = work / f"sink-{self.port}.out"
        self.process = subprocess.Popen(
            [SMTP_SINK, "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "1000"],
            stdout=open(self.output, "w"),
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def messages(self):
        text = self.output.read_text(errors="replace")
        tail = text.rsplit("mesg=", 1)
        return int("".join(c for c in tail[1][:12] if c.isdigit()) or 0) if len(tail) > 1 else 0

    def stop(self):
        self.process.kill()
        self.process.wait()


class Postern:
    name = "postern"
    binary = POSTERN
    durability = "one durable (O_DSYNC) write per group commit before 250"

    @staticmethod
    def unsupported(scenario):
        return None

    def __init__(self, work, next_hop_port, scenario, material):
        self.directory = pathlib.Path(tempfile.mkdtemp(dir=work, prefix="postern-"))
        self.port = free_port()
        self.admin = free_port()
        features = ""
        listener_tls = "none"
        if scenario.get("starttls"):
            listener_tls = "starttls"
            features += (
                f'[tls]\ncertificate = "{material.certificate}"\n'
                f'private_key = "{material.private_key}"\n\n'
            )
        if scenario.get("dkim"):
            key = material.dkim_keys[scenario["dkim"]]
            features += (
                f'[[dkim]]\ndomain = "{SIGNING_DOMAIN}"\nselector = "bench"\n'
                f'algorithm = "{scenario["dkim"]}"\nprivate_key = "{key}"\n\n'
            )
        config = self.directory / "postern.toml"
        config.write_text(
            f"""[server]
hostname = "postern-bench.test"
spool = "{self.directory}/spool"
shards = 0

[[listener]]
address = "127.0.0.1:{self.port}"
tls = "{listener_tls}"

{features}
[relay]
allow_networks = ["127.0.0.0/8"]

[[route]]
domains = ["*"]
smarthost = "127.0.0.1:{next_hop_port}"
tls = "none"
connections_max = 20

[admin]
address = "127.0.0.1:{self.admin}"

[log]
level = "warn"
"""
        )
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "postern.log", "w"),
        )
        wait_for_port(self.port)

    def pids(self):
        return [self.process.pid]

    def cpu(self):
        return cpu_seconds(self.pids())

    def syncs(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        return sum(
            int(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("postern_spool_syncs_total{")
        )

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


class Postfix:
    name = "postfix"
    durability = "fsync of each queue file before 250 (Postfix default)"

    @staticmethod
    def unsupported(scenario):
        if scenario.get("dkim"):
            return "Postfix signs only through a milter (OpenDKIM), which the harness does not set up"
        return None

    def __init__(self, work, next_hop_port, scenario, material):
        self.directory = pathlib.Path(tempfile.mkdtemp(dir=work, prefix="postfix-"))
        self.directory.chmod(0o755)
        self.port = free_port()
        environment = dict(os.environ)
        if scenario.get("starttls"):
            environment["POSTFIX_TLS_CERTIFICATE"] = str(material.certificate)
            environment["POSTFIX_TLS_KEY"] = str(material.private_key)
        subprocess.run(
            [str(POSTFIX_INSTANCE), "start", str(self.directory), str(self.port), str(next_hop_port)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=environment,
        )

    def master(self):
        return int((self.directory / "spool" / "pid" / "master.pid").read_text().split()[0])

    def pids(self):
        master = self.master()
        children = subprocess.run(
            ["pgrep", "-P", str(master)], capture_output=True, text=True
        ).stdout.split()
        return [master] + [int(pid) for pid in children]

    def cpu(self):
        # Postfix runs short-lived children; the master reaps them, so their time shows in
        # its cutime/cstime, and the living ones are counted directly.
        master = self.master()
        return cpu_seconds([master], with_reaped_children=True) + cpu_seconds(self.pids()[1:])

    def syncs(self):
        return None

    def stop(self):
        subprocess.run([str(POSTFIX_INSTANCE), "stop", str(self.directory)], check=False)
        time.sleep(1)
        shutil.rmtree(self.directory, ignore_errors=True)


class CpuGroup:
    """A cgroup of its own for a relay whose children outlive their parents, so that no
    process's cutime/cstime sees them: the kernel's cpuacct counts every process in it.
    cgroup v2 (cpu.stat usage_usec) or v1 (cpuacct.usage, nanoseconds)."""

    def __init__(self, name):
        unified = pathlib.Path("/sys/fs/cgroup")
        if (unified / "cgroup.controllers").exists():
            self.path, self.procs = unified / name, "cgroup.procs"
        else:
            self.path, self.procs = unified / "cpuacct" / name, "tasks"
        self.path.mkdir()

    def enter(self):
        """For preexec_fn: move the forked child into the group before it execs."""
        (self.path / self.procs).write_text(str(os.getpid()))

    def pids(self):
        return [int(pid) for pid in (self.path / self.procs).read_text().split()]

    def cpu(self):
        if self.procs == "tasks":
            return int((self.path / "cpuacct.usage").read_text()) / 1e9
        for line in (self.path / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        return 0.0

    def remove(self):
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


class Exim:
    name = "exim"
    durability = "fsync of each spool file (-D, -H) before 250 (Exim default)"

    @staticmethod
    def unsupported(scenario):
        if scenario.get("dkim"):
            return "Exim's DKIM signing is not configured by bench/exim-instance.sh"
        if scenario.get("starttls"):
            return "bench/exim-instance.sh gives Exim no certificate"
        return None

    def __init__(self, work, next_hop_port, scenario, material):
        self.directory = pathlib.Path(tempfile.mkdtemp(dir=work, prefix="exim-"))
        self.directory.chmod(0o755)
        self.port = free_port()
        # Exim forks a reception process per connection, which re-execs Exim for each
        # delivery and does not wait for it, so the daemon's cutime misses most of the work
        # (about two thirds, measured); the instance runs in a cgroup of its own instead.
        self.group = CpuGroup(f"postern-bench-exim-{self.port}")
        subprocess.run(
            [str(EXIM_INSTANCE), "start", str(self.directory), str(self.port), str(next_hop_port)],
            check=True,
            stdout=subprocess.DEVNULL,
            preexec_fn=self.group.enter,
        )

    def pids(self):
        return self.group.pids()

    def cpu(self):
        return self.group.cpu()

    def syncs(self):
        return None

    def stop(self):
        subprocess.run([str(EXIM_INSTANCE), "stop", str(self.directory)], check=False)
        time.sleep(1)
        for pid in self.group.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.group.remove()
        shutil.rmtree(self.directory, ignore_errors=True)


RELAYS = {"postern": Postern, "postfix": Postfix, "exim": Exim}


def load_command(tool, scenario, messages, port, json_path):
    """The command that offers `messages` to 127.0.0.1:`port` as the scenario says."""
    if tool == "smtp-source":
        command = [SMTP_SOURCE, "-m", str(messages), "-s", str(SESSIONS), "-l", str(scenario["size"])]
        if scenario["reuse"]:
            command.append("-d")
        return command + ["-f", SENDER, "-t", "rcpt@sink.test", f"127.0.0.1:{port}"]
    command = [
        str(LOADGEN), "send", "--quiet", "--threads", "1", "--to", f"127.0.0.1:{port}",
        "--messages", str(messages), "--concurrency", str(SESSIONS),
        "--size", str(scenario["size"]), "--per-connection", "0" if scenario["reuse"] else "1",
        "--from", SENDER, "--json", str(json_path),
    ]
    if scenario.get("starttls"):
        # The certificate is the harness's own; what is measured is the handshake's cost.
        command += ["--starttls", "--insecure"]
    if scenario.get("rate"):
        command += ["--rate", str(scenario["rate"])]
    return command


def run_once(work, relay_class, scenario, messages, tool, material):
    sink = Sink(work)
    relay = relay_class(work, sink.port, scenario, material)
    report_path = work / "loadgen.json"
    try:
        time.sleep(0.5)
        cpu_before = relay.cpu()
        load = load_command(tool, scenario, messages, relay.port, report_path)
        started = time.monotonic()
        subprocess.run(load, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        accepted_s = time.monotonic() - started

        deadline = time.monotonic() + DRAIN_PATIENCE_S
        while sink.messages() < messages and time.monotonic() < deadline:
            time.sleep(0.02)
        delivered = sink.messages()
        delivered_s = time.monotonic() - started
        cpu = relay.cpu() - cpu_before
        syncs = relay.syncs()
        result = {
            "accepted_per_s": messages / accepted_s,
            "delivered_per_s": delivered / delivered_s,
            "delivered": delivered,
            "relay_cpu_ms_per_message": cpu * 1000 / messages,
            "relay_peak_rss_kib": peak_rss_kib(relay.pids()),
            "syncs_per_message": None if syncs is None else syncs / messages,
            "ack_p50_ms": None,
            "ack_p99_ms": None,
        }
        if tool == "loadgen":
            report = json.loads(report_path.read_text())
            reply = report["latency_data_reply"]
            result["accepted_per_s"] = report["messages_per_second"]
            result["ack_p50_ms"] = reply["p50_us"] / 1000
            result["ack_p99_ms"] = reply["p99_us"] / 1000
        return result
    finally:
        relay.stop()
        sink.stop()


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class Material:
    """Keys and a certificate made once per run: an ECDSA P-256 server certificate (each
    handshake then costs one ECDSA signature rather than an RSA-2048 one, as for relays that
    offer an ECDSA certificate) and one DKIM key per algorithm, written by `postern dkim
    keygen`."""

    def __init__(self, work):
        self.directory = work / "material"
        self.directory.mkdir()
        self.directory.chmod(0o755)
        self.certificate = self.directory / "certificate.pem"
        self.private_key = self.directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2",
             "-subj", "/CN=bench.test", "-keyout", str(self.private_key),
             "-out", str(self.certificate)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.private_key.chmod(0o644)  # Postfix's smtpd reads it too.
        self.dkim_keys = {}
        for algorithm in ("ed25519-sha256", "rsa-sha256"):
            path = self.directory / f"dkim-{algorithm}.pem"
            subprocess.run(
                [str(POSTERN), "dkim", "keygen", "--domain", SIGNING_DOMAIN, "--selector", "bench",
                 "--algorithm", algorithm, "--output", str(path)],
                check=True, stdout=subprocess.DEVNULL,
            )
            self.dkim_keys[algorithm] = path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--scenarios", default="a,b,c,d,e,f,g")
    parser.add_argument("--relays", default="postern,postfix")
    parser.add_argument("--load", default="both", choices=["smtp-source", "loadgen", "both"])
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--candidate", default=None, metavar="BINARY",
        help="a second postern build, run as the relay 'candidate' beside the others "
             "(add it to --relays) for an interleaved A/B comparison of a change",
    )
    args = parser.parse_args()

    if args.candidate:
        binary = pathlib.Path(args.candidate).resolve()
        if not binary.exists():
            sys.exit(f"{binary} is missing")
        RELAYS["candidate"] = type("Candidate", (Postern,), {"name": "candidate", "binary": binary})

    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not pathlib.Path(tool).exists():
            sys.exit(f"{tool} is missing: install the Debian package postfix")
    if not POSTERN.exists():
        sys.exit(f"{POSTERN} is missing: run `cargo build --release --bin postern`")

    chosen = args.scenarios.split(",")
    relays = args.relays.split(",")
    tools = ["smtp-source", "loadgen"] if args.load == "both" else [args.load]
    if "loadgen" in tools and not LOADGEN.exists():
        sys.exit(f"{LOADGEN} is missing: run `cargo build --release --workspace`")
    work = pathlib.Path(tempfile.mkdtemp(prefix="postern-bench-", dir="/var/tmp"))
    work.chmod(0o755)  # Postfix's own user must reach its instance below it.
    material = Material(work)
    keys = [key for key in chosen if key in SCENARIOS]
    not_configured = {}
    runs = {}
    for key in keys:
        for tool in tools:
            if tool not in SCENARIOS[key].get("tools", [tool]):
                continue
            runs[(key, tool)] = {}
            for relay in relays:
                reason = RELAYS[relay].unsupported(SCENARIOS[key])
                if reason:
                    not_configured.setdefault(key, {})[relay] = reason
                else:
                    runs[(key, tool)][relay] = []
    open_loop = "g" in chosen and "loadgen" in tools
    if open_loop:
        runs[("g", "loadgen")] = {relay: [] for relay in relays}
    try:
        for repetition in range(args.repeat):
            for (key, tool) in list(runs):
                scenario = SCENARIOS.get(key)
                if key == "g":
                    # Half of the best closed-loop rate postern reached in (b) so far.
                    peaks = [r["accepted_per_s"] for r in runs.get(("b", "loadgen"), {}).get("postern", [])]
                    scenario = dict(OPEN_LOOP, rate=int(max(peaks, default=4000) / 2))
                for relay in runs[(key, tool)]:
                    result = run_once(work, RELAYS[relay], scenario, args.messages, tool, material)
                    result["offered_per_s"] = scenario.get("rate")
                    runs[(key, tool)][relay].append(result)
                    latency = (
                        f" p99 {result['ack_p99_ms']:.2f} ms" if result["ack_p99_ms"] is not None else ""
                    )
                    print(
                        f"[{repetition + 1}/{args.repeat}] {key} {tool:11} {relay:8} "
                        f"accepted {result['accepted_per_s']:7.0f}/s "
                        f"delivered {result['delivered_per_s']:7.0f}/s "
                        f"cpu {result['relay_cpu_ms_per_message']:.3f} ms/msg{latency}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}",
        "messages": args.messages,
        "repeat": args.repeat,
        "load": "smtp-source (Postfix 3.7) and/or postern-loadgen, 50 sessions; next hop smtp-sink",
        "durability": {relay: RELAYS[relay].durability for relay in relays},
        "scenarios": {},
        "skipped": {key: SKIPPED[key] for key in chosen if key in SKIPPED},
        "not_configured": not_configured,
    }
    for (key, tool), by_relay in runs.items():
        title = OPEN_LOOP["title"] if key == "g" else SCENARIOS[key]["title"]
        entry = report["scenarios"].setdefault(f"{key} ({tool})", {"title": title})
        for relay, results in by_relay.items():
            if results:
                entry[relay] = {
                    metric: summarise([r[metric] for r in results])
                    for metric in results[0]
                    if metric != "delivered"
                }
    text = json.dumps(report, indent=2)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side by side: dual-mode (Postgres, Redis) against graphile-worker, pg-boss, apalis-postgres
and BullMQ, on one Postgres server and one redis-server this script starts itself.

    python3 benches/peers/run.py [--rounds 2] [--jobs 20000] [--only a,b] [--statements]

Each contender is a separate program (see README.md): an enqueuer, 2 worker processes and, end
to end, one producer process of 8 producers; this script starts them, times from outside, reads
the CPU time of Postgres (the postmaster and all its children, live and exited), of
redis-server and of the worker processes from /proc, checks that every job ran exactly once and
that nothing is left, and prints a markdown table of medians.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
NODE = os.path.join(NODE_DIR, "node_modules", "node", "bin", "node")
CONTENDER_JS = os.path.join(NODE_DIR, "contender.mjs")
TICK = os.sysconf("SC_CLK_TCK")
WORKERS = 2
CONCURRENCY = 16
PRODUCERS = 8


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def is_root():
    return os.geteuid() == 0


def as_user(user, argv):
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"] + argv if is_root() else argv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid):
    """(utime, stime, cutime, cstime, ppid) in seconds, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    ut, st, cut, cst = (int(x) / TICK for x in fields[11:15])
    return ut, st, cut, cst, int(fields[1])


def cpu_of(pid):
    """The CPU time of a process itself (user + system), seconds."""
    s = proc_stat(pid)
    return 0.0 if s is None else s[0] + s[1]


def tree_cpu(root):
    """CPU of `root`, of its reaped children (cutime + cstime) and of its live children.

    A child reaped between the read of `root` and the scan of the children would be in neither:
    the scan is repeated until `root`'s cutime + cstime did not move across it."""
    for _ in range(20):
        before = proc_stat(root)
        live = 0.0
        for path in glob.glob("/proc/[0-9]*/stat"):
            pid = int(path.split("/")[2])
            if pid == root:
                continue
            c = proc_stat(pid)
            if c is not None and c[4] == root:
                live += c[0] + c[1]
        after = proc_stat(root)
        if before[2:4] == after[2:4]:
            return after[0] + after[1] + after[2] + after[3] + live
    return after[0] + after[1] + after[2] + after[3] + live


# ------------------------------------------------------------------------------------------
# Servers


class Postgres:
    """A throwaway cluster: initdb + pg_ctl on a free loopback port, fsync on, default settings."""

    def __init__(self, statements=False):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if bins:
            self.bin = os.path.dirname(bins[-1])
        elif shutil.which("initdb"):
            self.bin = os.path.dirname(shutil.which("initdb"))
        else:
            sys.exit("initdb not found: install postgresql (apt-get install -y postgresql)")
        self.dir = tempfile.mkdtemp(prefix="peers-pg-")
        if is_root():
            subprocess.run(["chown", "postgres:postgres", self.dir], check=True)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        subprocess.run(
            as_user("postgres", [f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        if statements:
            opts += " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
        subprocess.run(
            as_user("postgres", [f"{self.bin}/pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        self.version = self.sql("postgres", "show server_version").strip()

    def url(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, db, query):
        out = subprocess.run(
            [f"{self.bin}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-c", query],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def cpu(self):
        return tree_cpu(self.pid)

    def stop(self):
        subprocess.run(as_user("postgres", [f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"]), stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="peers-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                break
            except OSError:
                time.sleep(0.05)
        self.version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True, capture_output=True, text=True).stdout

    def cpu(self):
        return cpu_of(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Contenders: how to start each role, and how to ask what is left.


class Contender:
    def __init__(self, name, store, setting, argv, left):
        self.name, self.store, self.setting, self.argv, self.left = name, store, setting, argv, left


def contenders(bin_dir):
    dm = os.path.join(bin_dir, "peers-dual-mode")
    ap = os.path.join(bin_dir, "peers-apalis")
    node = [NODE, CONTENDER_JS]

    def dm_argv(backend):
        def argv(role, url, queue, *rest):
            return [dm, role, backend, url, queue, *map(str, rest)]

        return argv

    def dm_left(backend):
        def left(env, url, queue):
            out = subprocess.run([dm, "left", backend, url, queue], capture_output=True, text=True, check=True).stdout.split()
            return int(out[1]) + int(out[3]) + int(out[5]) + int(out[7]), " ".join(out)

        return left

    def node_argv(system):
        def argv(role, url, queue, *rest):
            return [*node, system, role, url, queue, *map(str, rest)]

        return argv

    def ap_argv(role, url, queue, *rest):
        if role == "worker":
            rest = (CONCURRENCY, 16)
        return [ap, role, url, queue, *map(str, rest)]

    def graphile_left(env, url, queue):
        n = int(env.pg.sql(env.db, "select count(*) from graphile_worker._private_jobs").strip())
        return n, f"{n} rows in _private_jobs"

    def pgboss_left(env, url, queue):
        out = env.pg.sql(env.db, "select state, count(*) from pgboss.job group by state order by state").strip()
        states = dict(line.split("|") for line in out.splitlines() if line)
        left = sum(int(v) for k, v in states.items() if k != "completed")
        return left, out.replace("\n", ", ")

    def apalis_left(env, url, queue):
        out = env.pg.sql(env.db, "select status, count(*) from apalis.jobs group by status order by status").strip()
        states = dict(line.split("|") for line in out.splitlines() if line)
        left = sum(int(v) for k, v in states.items() if k != "Done")
        return left, out.replace("\n", ", ")

    def bullmq_left(env, url, queue):
        out = subprocess.run([*node, "bullmq", "left", url, queue], capture_output=True, text=True, check=True).stdout.split()
        return int(out[1]) + int(out[3]), " ".join(out)

    return [
        Contender("dual-mode, Postgres", "pg", "2 processes x 16 (default `WorkerConfig`), pool of 8 each", dm_argv("postgres"), dm_left("postgres")),
        Contender("graphile-worker 0.18", "pg", "2 processes x 16, `localQueue.size` 17, `completeJobBatchDelay` 0", node_argv("graphile"), graphile_left),
        Contender("pg-boss 12", "pg", "2 processes x `batchSize` 16, `burstWhenBatchFull`", node_argv("pgboss"), pgboss_left),
        Contender("apalis 1.0 + apalis-postgres 1.0", "pg", "2 processes x 16, batch 16, pub/sub", ap_argv, apalis_left),
        Contender("dual-mode, Redis", "redis", "2 processes x 16 (default `WorkerConfig`)", dm_argv("redis"), dm_left("redis")),
        Contender("BullMQ 6", "redis", "2 processes x concurrency 16", node_argv("bullmq"), bullmq_left),
    ]


# ------------------------------------------------------------------------------------------
# One phase


class Proc:
    """A contender process speaking the protocol: `ready`, then a go line, `count n ms`, `final n`."""

    def __init__(self, argv, name):
        self.name = name
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = threading.Event()
        self.count, self.last_ms, self.final, self.lines = 0, 0, None, []
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        for line in self.p.stdout:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "ready":
                self.ready.set()
            elif parts[0] == "count":
                self.count, self.last_ms = int(parts[1]), int(parts[2])
            elif parts[0] == "final":
                self.final = int(parts[1])
            else:
                self.lines.append(line.strip())

    def wait_ready(self, timeout=120):
        if not self.ready.wait(timeout):
            raise RuntimeError(f"{self.name} not ready in {timeout}s")

    def go(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def cpu(self):
        return cpu_of(self.p.pid)

    def stop(self, timeout=90):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(5)


class Env:
    pass


def run_phase(c, shape, n, rnd, pg, redis, statements):
    env = Env()
    env.pg = pg
    queue = f"peers_{shape}_{rnd}"
    if c.store == "pg":
        env.db = "bench_" + "".join(ch if ch.isalnum() else "_" for ch in c.name.lower())[:30] + f"_{shape}_{rnd}"
        pg.sql("postgres", f"create database {env.db}")
        url = pg.url(env.db)
    else:
        redis.cli("flushall")
        url = redis.url()
    if shape == "drain":
        out = subprocess.run(c.argv("enqueue", url, queue, n), capture_output=True, text=True)
        if out.returncode != 0 or "pushed" not in out.stdout:
            raise RuntimeError(f"{c.name} enqueue failed: {out.stdout}{out.stderr}")
    if c.store == "pg":
        if statements:
            pg.sql(env.db, "create extension if not exists pg_stat_statements")
        pg.sql(env.db, "checkpoint")
    time.sleep(0.5)
    workers = [Proc(c.argv("worker", url, queue, CONCURRENCY), f"{c.name} worker {i}") for i in range(WORKERS)]
    producer = Proc(c.argv("produce", url, queue, n, PRODUCERS), f"{c.name} producer") if shape == "e2e" else None
    try:
        for w in workers + ([producer] if producer else []):
            w.wait_ready()
        if producer:
            for w in workers:
                w.go()
            time.sleep(0.5)  # the workers start and go idle before the first push
        if statements and c.store == "pg":
            pg.sql(env.db, "select pg_stat_statements_reset()")
        pg0, r0 = pg.cpu(), redis.cpu()
        w0 = sum(w.cpu() for w in workers)
        p0 = producer.cpu() if producer else 0.0
        t0 = time.time()
        if producer:
            producer.go()
        else:
            for w in workers:
                w.go()
        deadline = t0 + 600
        while sum(w.count for w in workers) < n:
            if time.time() > deadline or any(w.p.poll() is not None for w in workers):
                raise RuntimeError(f"{c.name} {shape}: {sum(w.count for w in workers)} of {n} done; " + " | ".join(sum((w.lines for w in workers), [])))
            time.sleep(0.005)
        pg1, r1 = pg.cpu(), redis.cpu()
        w1 = sum(w.cpu() for w in workers)
        p1 = producer.cpu() if producer else 0.0
        end = max(w.last_ms for w in workers) / 1000.0
        stmts = None
        if statements and c.store == "pg":
            stmts = pg.sql(
                env.db,
                "select calls, round(total_exec_time::numeric, 1), regexp_replace(left(query, 160), '\\s+', ' ', 'g') from pg_stat_statements "
                "where dbid = (select oid from pg_database where datname = current_database()) order by calls desc limit 25",
            )
    finally:
        if producer:
            producer.stop()
        for w in workers:
            w.stop()
    finals = [w.final for w in workers]
    left, detail = c.left(env, url, queue)
    ran = sum(f or 0 for f in finals)
    ok = ran == n and left == 0 and None not in finals
    if c.store == "pg":
        for _ in range(20):
            try:
                pg.sql("postgres", f"drop database {env.db} with (force)")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.5)
    took = end - t0
    res = {
        "contender": c.name,
        "shape": shape,
        "round": rnd,
        "seconds": took,
        "rate": n / took,
        "pg_ms": (pg1 - pg0) * 1e3 / n,
        "redis_ms": (r1 - r0) * 1e3 / n,
        "workers_ms": (w1 - w0) * 1e3 / n,
        "producer_ms": (p1 - p0) * 1e3 / n,
        "ran": finals,
        "left": detail,
        "ok": ok,
        "statements": stmts,
    }
    log(f"  {c.name:34} {shape:5} round {rnd}: {res['rate']:8.0f} jobs/s, Postgres {res['pg_ms']:.3f} ms/job, Redis {res['redis_ms']:.3f}, workers {res['workers_ms']:.3f}; ran {finals}, left: {detail}{'' if ok else '  <-- NOT EXACTLY ONCE'}")
    return res


def txpush_phase(bin_dir, pg, mode, n, rnd):
    db = f"bench_txpush_{mode}_{rnd}"
    pg.sql("postgres", f"create database {db}")
    p = Proc([os.path.join(bin_dir, "peers-dual-mode"), "txpush", pg.url(db), str(n), mode], f"txpush {mode}")
    try:
        p.wait_ready()
        pg.sql(db, "checkpoint")
        c0 = pg.cpu()
        p.go()
        p.p.wait(600)
        p.t.join(5)
        c1 = pg.cpu()
        secs = float(next(line.split()[1] for line in p.lines if line.startswith("done")))
    finally:
        p.stop()
    pg.sql("postgres", f"drop database {db} with (force)")
    res = {"mode": mode, "round": rnd, "rate": n / secs, "pg_ms": (c1 - c0) * 1e3 / n}
    log(f"  txpush {mode:8} round {rnd}: {res['rate']:7.0f} pushes/s, Postgres {res['pg_ms']:.3f} ms/push")
    return res


# ------------------------------------------------------------------------------------------


def build(bin_dir_hint, skip):
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(HERE, "target")
    if not skip:
        subprocess.run(["cargo", "build", "--release", "--manifest-path", os.path.join(HERE, "Cargo.toml")], check=True)
    if not os.path.exists(NODE):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
        # npm 11 runs install scripts only of approved packages (package.json `allowScripts`):
        # `node`'s fetches the Node 22 binary.
        subprocess.run(["npm", "rebuild", "node"], cwd=NODE_DIR, check=True)
    return bin_dir_hint or os.path.join(target, "release")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def fmt(x, digits=0):
    return f"{x:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--tx-pushes", type=int, default=5000)
    ap.add_argument("--only", default="", help="comma-separated substrings of contender names")
    ap.add_argument("--shapes", default="drain,e2e")
    ap.add_argument("--no-txpush", action="store_true")
    ap.add_argument("--statements", action="store_true", help="load pg_stat_statements and print the top statements per phase")
    ap.add_argument("--bin-dir", default=None, help="where the Rust contenders are (default: the cargo target dir's release/)")
    ap.add_argument("--no-build", action="store_true", help="run the binaries as they are, without cargo build")
    ap.add_argument("--json", default=None, help="also write every measurement to this file")
    args = ap.parse_args()

    bin_dir = build(args.bin_dir, args.no_build)
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    pg = Postgres(args.statements)
    redis = Redis()
    results, tx = [], []
    try:
        cs = contenders(bin_dir)
        if args.only:
            keys = [k.strip().lower() for k in args.only.split(",")]
            cs = [c for c in cs if any(k in c.name.lower() for k in keys)]
        shapes = args.shapes.split(",")
        for rnd in range(args.rounds):
            order = cs if rnd % 2 == 0 else list(reversed(cs))
            for shape in shapes:
                log(f"round {rnd + 1}, {shape}")
                for c in order:
                    results.append(run_phase(c, shape, args.jobs, rnd, pg, redis, args.statements))
            if not args.no_txpush:
                for mode in (["push_in", "insert"] if rnd % 2 == 0 else ["insert", "push_in"]):
                    tx.append(txpush_phase(bin_dir, pg, mode, args.tx_pushes, rnd))
    finally:
        pg_version, redis_version = pg.version, redis.version
        pg.stop()
        redis.stop()
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "txpush": tx, "uptime": [uptime_before, uptime_after]}, f, indent=1)

    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    print(f"uptime before: `{uptime_before}`  ")
    print(f"uptime after: `{uptime_after}`  ")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; Postgres {pg_version} (fsync on, default settings); redis-server {redis_version}  ")
    print(f"{args.jobs:,} no-op jobs per phase, {WORKERS} worker processes x {CONCURRENCY}, end to end {PRODUCERS} producers one by one; medians of {args.rounds} interleaved rounds")
    print()
    print("| contender | setting | drain jobs/s | end to end jobs/s | server CPU per job, drain / e2e | worker processes' CPU per job, drain / e2e | producer CPU per job, e2e | every job once |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for c in cs:
        cells = {}
        for shape in ("drain", "e2e"):
            rs = [r for r in results if r["contender"] == c.name and r["shape"] == shape]
            cells[shape] = rs
        d, e = cells["drain"], cells["e2e"]
        server = "pg_ms" if c.store == "pg" else "redis_ms"
        srv_name = "Postgres" if c.store == "pg" else "Redis"

        def g(rs, k, digits=0):
            return fmt(med(rs, k), digits) if rs else "-"

        once = all(r["ok"] for r in d + e)
        rounds_d = " / ".join(fmt(r["rate"]) for r in d)
        rounds_e = " / ".join(fmt(r["rate"]) for r in e)
        print(
            f"| {c.name} | {c.setting} | {g(d, 'rate')} ({rounds_d}) | {g(e, 'rate')} ({rounds_e}) | {srv_name} {g(d, server, 3)} / {g(e, server, 3)} ms "
            f"| {g(d, 'workers_ms', 3)} / {g(e, 'workers_ms', 3)} ms | {g(e, 'producer_ms', 3)} ms | {'yes' if once else 'NO'} |"
        )
    if tx:
        print()
        print(f"Transactional push, one by one on one connection, {args.tx_pushes:,} transactions per phase, medians of {args.rounds} rounds:")
        print()
        print("| per transaction | pushes/s | Postgres CPU per push |")
        print("|---|---:|---:|")
        for mode, label in (("push_in", "`BEGIN; push_in; COMMIT` (dual-mode, in the caller's sqlx transaction)"), ("insert", "`BEGIN; INSERT` of one row; `COMMIT` (plain table, same connection)")):
            rs = [r for r in tx if r["mode"] == mode]
            print(f"| {label} | {fmt(med(rs, 'rate'))} ({' / '.join(fmt(r['rate']) for r in rs)}) | {med(rs, 'pg_ms'):.3f} ms |")
    if args.statements:
        for r in results:
            if r["statements"]:
                print(f"\npg_stat_statements, {r['contender']}, {r['shape']}, round {r['round'] + 1} (calls, total ms, query):\n")
                print("```")
                print(r["statements"].rstrip())
                print("```")
    if not all(r["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()

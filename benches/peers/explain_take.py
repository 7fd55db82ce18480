#!/usr/bin/env python3
"""The plan of the Postgres store's take (the read of ready entries) over a backlog.

    python3 benches/peers/explain_take.py [--jobs 20000]

Starts a throwaway Postgres as run.py does, pushes a backlog with `peers-dual-mode enqueue`
(build it first: `cargo build --release --manifest-path benches/peers/Cargo.toml`), and prints
`EXPLAIN (ANALYZE, BUFFERS)` of the take as `dual-mode-postgres/src/runs.rs` wrote it when this
was added (joined back on `(q, lane, ms, seq)`) of the same take joined on `ctid`, and
of an UPDATE whose rows are `ctid = ANY (ARRAY (<the locked select>))`, each with
a custom plan and with the generic plan a prepared statement settles on after five executions
(sqlx prepares every query), before and after an `ANALYZE`. Copy the take from runs.rs again
when it changes.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

TAKE = (
    "WITH r AS MATERIALIZED (SELECT ms, seq FROM dual_mode.entries WHERE q = $1 AND lane = $2 "
    "AND consumer IS NULL ORDER BY ms, seq LIMIT $5 FOR UPDATE SKIP LOCKED) "
    "UPDATE dual_mode.entries e SET consumer = $3, delivered_ms = $4, deliveries = 1 FROM r "
    "WHERE e.q = $1 AND e.lane = $2 AND e.ms = r.ms AND e.seq = r.seq RETURNING e.ms, e.seq, e.fields"
)
TAKE_CTID = (
    "WITH r AS MATERIALIZED (SELECT ctid FROM dual_mode.entries WHERE q = $1 AND lane = $2 "
    "AND consumer IS NULL ORDER BY ms, seq LIMIT $5 FOR UPDATE SKIP LOCKED) "
    "UPDATE dual_mode.entries e SET consumer = $3, delivered_ms = $4, deliveries = 1 FROM r "
    "WHERE e.ctid = r.ctid RETURNING e.ms, e.seq, e.fields"
)

TAKE_ANY = (
    "UPDATE dual_mode.entries e SET consumer = $3, delivered_ms = $4, deliveries = 1 "
    "WHERE e.ctid = ANY (ARRAY (SELECT ctid FROM dual_mode.entries WHERE q = $1 AND lane = $2 "
    "AND consumer IS NULL ORDER BY ms, seq LIMIT $5 FOR UPDATE SKIP LOCKED)) RETURNING e.ms, e.seq, e.fields"
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--bin-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(run.HERE, "target"), "release"))
    args = ap.parse_args()
    pg = run.Postgres()
    try:
        pg.sql("postgres", "create database explain_take")
        out = subprocess.run(
            [os.path.join(args.bin_dir, "peers-dual-mode"), "enqueue", "postgres", pg.url("explain_take"), "q", str(args.jobs)],
            capture_output=True, text=True, check=True,
        )
        print(out.stdout.strip())
        q = pg.sql("explain_take", "select q from dual_mode.entries limit 1").strip()
        for analyzed in (False, True):
            if analyzed:
                pg.sql("explain_take", "analyze dual_mode.entries")
            for name, sql in (
                ("take (joined on q, lane, ms, seq)", TAKE),
                ("take joined on ctid", TAKE_CTID),
                ("take as ctid = ANY (ARRAY (...))", TAKE_ANY),
            ):
                for mode in ("force_custom_plan", "force_generic_plan"):
                    print(f"== {name}, {mode}, {'after' if analyzed else 'before'} ANALYZE")
                    print(
                        pg.sql(
                            "explain_take",
                            f"set plan_cache_mode = {mode}; PREPARE t(text, int2, text, int8, int8) AS {sql}; BEGIN; "
                            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE t('{q}', 1, 'c', 1, 16); ROLLBACK;",
                        )
                    )
    finally:
        pg.stop()


if __name__ == "__main__":
    main()

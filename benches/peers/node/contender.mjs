// The Node contenders of the side-by-side bench: graphile-worker, pg-boss and BullMQ, each in
// the roles and protocol of the Rust ones (see ../README.md):
//
//   node contender.mjs <system> enqueue <url> <queue> <n>
//   node contender.mjs <system> worker  <url> <queue> <concurrency>
//   node contender.mjs <system> produce <url> <queue> <n> <producers>
//
// <system> is graphile, pgboss or bullmq; <url> is a Postgres URL, or redis://host:port for
// BullMQ. A worker prints `ready`, waits for a line on stdin, then prints `count <n> <unix ms of
// the last run>` at most every 20 ms while it changes, and `final <n>` after SIGTERM once it has
// stopped. A producer prints `ready`, waits for a line, pushes one by one from <producers>
// loops (each awaits its push) and prints `pushed <n>`.

import { createInterface } from "node:readline";

const [system, role, url, queue, a, b] = process.argv.slice(2);
const print = (line) => process.stdout.write(line + "\n");

function waitGo() {
  print("ready");
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.once("line", () => {
      rl.close();
      resolve();
    });
  });
}

let count = 0;
let last = 0;
function ran(n = 1) {
  count += n;
  last = Date.now();
}
function report() {
  let shown = 0;
  return setInterval(() => {
    if (count !== shown) {
      shown = count;
      print(`count ${count} ${last}`);
    }
  }, 20);
}
function onTerm(stop) {
  process.once("SIGTERM", async () => {
    await stop();
    print(`final ${count}`);
    process.exit(0);
  });
}

async function producers(n, k, pushOne) {
  const loops = [];
  for (let i = 0; i < k; i++) {
    const share = Math.floor(n / k) + (i < n % k ? 1 : 0);
    loops.push(
      (async () => {
        for (let j = 0; j < share; j++) await pushOne();
      })(),
    );
  }
  await Promise.all(loops);
  print(`pushed ${n}`);
}

// graphile-worker 0.18: addJobs (one call, the bulk path) to enqueue; run() with a local queue
// of concurrency + 1 and completions batched (delay 0) to work; addJob to push one by one.
async function graphile() {
  const { makeWorkerUtils, run } = await import("graphile-worker");
  if (role === "enqueue") {
    const utils = await makeWorkerUtils({ connectionString: url });
    await utils.migrate();
    const specs = Array.from({ length: Number(a) }, () => ({ identifier: "noop", payload: {} }));
    await utils.addJobs(specs);
    await utils.release();
    print(`pushed ${a}`);
  } else if (role === "worker") {
    const concurrency = Number(a);
    const utils = await makeWorkerUtils({ connectionString: url });
    await utils.migrate();
    await utils.release();
    await waitGo();
    const timer = report();
    const runner = await run({
      connectionString: url,
      concurrency,
      // Its own advice: it warns at startup when the pool is smaller than the concurrency.
      maxPoolSize: concurrency,
      noHandleSignals: true,
      taskList: { noop: async () => ran() },
      preset: { worker: { localQueue: { size: concurrency + 1 }, completeJobBatchDelay: 0 } },
    });
    onTerm(async () => {
      await runner.stop();
      clearInterval(timer);
    });
  } else if (role === "produce") {
    const utils = await makeWorkerUtils({ connectionString: url });
    await utils.migrate();
    await waitGo();
    await producers(Number(a), Number(b), () => utils.addJob("noop", {}));
    await utils.release();
  }
}

// pg-boss 12: insert (one call, the bulk path) to enqueue; work() with batchSize 16 and
// burstWhenBatchFull; send to push one by one.
async function pgboss() {
  const { PgBoss } = await import("pg-boss");
  const boss = new PgBoss({ connectionString: url });
  boss.on("error", (e) => console.error("pg-boss:", e));
  await boss.start();
  await boss.createQueue(queue);
  if (role === "enqueue") {
    await boss.insert(queue, Array.from({ length: Number(a) }, () => ({ data: {} })));
    await boss.stop({ graceful: true });
    print(`pushed ${a}`);
  } else if (role === "worker") {
    const batchSize = Number(a);
    await waitGo();
    const timer = report();
    await boss.work(queue, { batchSize, burstWhenBatchFull: true }, async (jobs) => ran(jobs.length));
    onTerm(async () => {
      const stopped = new Promise((r) => boss.once("stopped", r));
      await boss.stop({ graceful: true, timeout: 30000 });
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 31000))]);
      clearInterval(timer);
    });
  } else if (role === "produce") {
    await waitGo();
    await producers(Number(a), Number(b), () => boss.send(queue, {}));
    await boss.stop({ graceful: true });
  }
}

// BullMQ 6: addBulk (one pipelined call) to enqueue; a Worker of concurrency 16; add to push
// one by one.
async function bullmq() {
  const { Queue, Worker } = await import("bullmq");
  const u = new URL(url);
  const connection = { host: u.hostname, port: Number(u.port) };
  if (role === "enqueue") {
    const q = new Queue(queue, { connection });
    await q.addBulk(Array.from({ length: Number(a) }, () => ({ name: "noop", data: {} })));
    await q.close();
    print(`pushed ${a}`);
  } else if (role === "worker") {
    const worker = new Worker(queue, async () => ran(), { connection, concurrency: Number(a), autorun: false });
    await worker.waitUntilReady();
    await waitGo();
    const timer = report();
    worker.run();
    onTerm(async () => {
      await worker.close();
      clearInterval(timer);
    });
  } else if (role === "produce") {
    const q = new Queue(queue, { connection });
    await q.waitUntilReady();
    await waitGo();
    await producers(Number(a), Number(b), () => q.add("noop", {}));
    await q.close();
  } else if (role === "left") {
    const q = new Queue(queue, { connection });
    const c = await q.getJobCounts("wait", "active", "delayed", "prioritized", "waiting-children", "failed", "completed");
    print(`left ${c.wait + c.active + c.delayed + c.prioritized + c["waiting-children"]} failed ${c.failed} completed ${c.completed}`);
    await q.close();
  }
}

const systems = { graphile, pgboss, bullmq };
if (!systems[system]) {
  console.error("usage: node contender.mjs graphile|pgboss|bullmq enqueue|worker|produce|left <url> <queue> [n] [producers]");
  process.exit(2);
}
await systems[system]();
if (role !== "worker") process.exit(0);

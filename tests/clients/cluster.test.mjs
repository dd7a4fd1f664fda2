// The cluster (--redis): three real kronopd on loopback joined through a real redis-server
// (Debian's, started here on a free port with a directory of its own), official phoenix
// clients on each node, producers on any node through the rings. Presence and counters
// across nodes: cluster_presence.test.mjs.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  connectPhoenix,
  eventually,
  freePort,
  kronopctlBin,
  kronopdBin,
  run,
  sleep,
  startDaemon,
  withTimeout,
} from "./helpers.mjs";
import { expectOneSequence, listener, publish } from "./cluster_checks.mjs";
import { Redis, redisRaw, stopCluster } from "./redis_server.mjs";

let redis;
const nodes = [];

before(async () => {
  redis = await new Redis().start();
  // At most 2,000 records wait in memory for Redis: past that, in the log (the outbox).
  for (let i = 0; i < 3; i++) {
    nodes.push(await startDaemon({ extraArgs: ["--redis", redis.url, "--redis-max-waiting", "2000"] }));
  }
});

after(() => stopCluster(nodes, redis));

test("a producer on node A reaches phoenix clients on every node once, in order, under the same (epoch, seq)", async () => {
  const topic = "reel:9001";
  const clients = [];
  for (const d of nodes) clients.push(await listener(d, topic));
  const epochs = clients.map((c) => c.reply.epoch);
  assert.ok(epochs[0] > 0, JSON.stringify(clients[0].reply));
  assert.deepEqual(epochs, [epochs[0], epochs[0], epochs[0]], "one stream on every node");
  const r = await publish(nodes[0], topic, 300, "a");
  assert.equal(r.code, 0, r.stderr);
  for (const [i, c] of clients.entries()) {
    await eventually(() => c.got.length >= 300, 20000, `node ${i} to have 300 (has ${c.got.length})`);
  }
  await sleep(200); // room for a duplicate to show
  for (const [i, c] of clients.entries()) {
    assert.equal(c.got.length, 300, `node ${i}: no duplicate`);
    c.got.forEach((p, k) => {
      if (p.seq !== k + 1) assert.fail(`node ${i}: message ${k} has seq ${p.seq}`);
    });
  }
  for (const c of clients) await c.socket.close();
});

test("producers on three nodes on one topic make one gap-free sequence, the same on every node", async () => {
  await expectOneSequence(nodes, "reel:9002", 200);
});

test("a client that leaves node B and rejoins on node C with last_seq and epoch recovers gap-free from Redis", async () => {
  const topic = "reel:9004";
  // A client on the producer's node that stays: a publish returns once the records are in
  // A's rings, and Redis numbers them after; what this client has, Redis has numbered.
  const watcher = await listener(nodes[0], topic);
  const first = await listener(nodes[1], topic);
  let r = await publish(nodes[0], topic, 100, "before");
  assert.equal(r.code, 0, r.stderr);
  await eventually(() => first.got.length >= 100, 20000, "the first 100 on node B");
  const last = first.got.at(-1).seq;
  const epoch = first.reply.epoch;
  await first.socket.close();
  // Missed while away: 150 more, published on A.
  r = await publish(nodes[0], topic, 150, "missed");
  assert.equal(r.code, 0, r.stderr);
  await eventually(() => watcher.got.length >= 250, 20000, `the 150 numbered (node A has ${watcher.got.length})`);
  await watcher.socket.close();
  const socket = await connectPhoenix(nodes[2]);
  const got = [];
  const channel = socket.channel(topic, { last_seq: last, epoch });
  channel.on("reel_update", (p) => got.push(p));
  const reply = await withTimeout(
    new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject)),
    10000,
    "the rejoin's reply",
  );
  assert.equal(reply.recovered, true, JSON.stringify(reply));
  assert.equal(reply.epoch, epoch);
  assert.equal(reply.last_seq, 250);
  await eventually(() => got.length >= 150, 10000, `150 recovered (has ${got.length})`);
  r = await publish(nodes[1], topic, 10, "after");
  assert.equal(r.code, 0, r.stderr);
  await eventually(() => got.length >= 160, 10000, `then 10 live (has ${got.length})`);
  await sleep(200);
  assert.equal(got.length, 160);
  got.forEach((p, k) => {
    if (p.seq !== last + k + 1) assert.fail(`message ${k} has seq ${p.seq}, not ${last + k + 1}`);
  });
  assert.deepEqual([...new Set(got.map((p) => p.from))], ["missed", "after"]);
  // Behind a stream Redis no longer has (another epoch): told it cannot recover.
  const other = socket.channel(topic, { last_seq: 3, epoch: epoch + 2 });
  const refused = await withTimeout(
    new Promise((resolve, reject) => other.join().receive("ok", resolve).receive("error", reject)),
    10000,
    "the other epoch's reply",
  );
  assert.equal(refused.recovered, false);
  await socket.close();
});

test("kill -9 of node A while its producer publishes 100,000: node B gets every message once, and A's log has each once", async () => {
  const topic = "reel:9006";
  const total = 100000;
  const c = await listener(nodes[1], topic);
  // One producer on A, 20,000 a second; A is killed and started again in the middle. Its
  // ring keeps what is published while no kronopd reads it, its log what Redis had not
  // taken when it died (sent again at the start, counted once).
  const publisher = run(
    kronopctlBin(),
    ["--shm-name", nodes[0].shmName, "publish", "--topic", topic, "--event", "reel_update",
      "--json", JSON.stringify({ from: "a", pad: "x".repeat(150) }), "--count", String(total),
      "--rate", "20000", "--wait-ms", "60000"],
    120000,
  );
  await eventually(() => c.got.length > 20000, 60000, `a fifth on node B (has ${c.got.length})`);
  // Redis stops answering for a moment: what A logs meanwhile (its ring space given back)
  // is not taken when A dies, and only A's log has it.
  redis.proc.kill("SIGSTOP");
  await sleep(500);
  nodes[0].proc.kill("SIGKILL");
  await nodes[0].exited;
  redis.proc.kill("SIGCONT");
  await nodes[0].restart();
  const published = await publisher;
  assert.equal(published.code, 0, published.stderr);
  await eventually(() => c.got.length >= total, 120000, `${total} on node B (has ${c.got.length})`, 200);
  await sleep(300); // room for a duplicate to show
  assert.equal(c.got.length, total, "no duplicate");
  c.got.forEach((p, k) => {
    if (p.seq !== k + 1) assert.fail(`message ${k} has seq ${p.seq}, not ${k + 1}`);
  });
  // A's own log: every record once, numbered 1..total.
  const dataDir = nodes[0].args[nodes[0].args.indexOf("--data-dir") + 1];
  let seqs = [];
  await eventually(
    async () => {
      const replay = await run(kronopctlBin(), ["--data-dir", dataDir, "replay", "--topic", topic, "--json"], 60000);
      assert.equal(replay.code, 0, replay.stderr);
      seqs = replay.stdout.trim().split("\n").map((line) => Number(JSON.parse(line).seq));
      return seqs.length >= total;
    },
    30000,
    `node A's log to hold ${total} rows`,
    500,
  );
  assert.equal(seqs.length, total);
  seqs.forEach((seq, k) => {
    if (seq !== k + 1) assert.fail(`log row ${k} has seq ${seq}`);
  });
  await c.socket.close();
});

test("a node subscribes only to the topics its clients hold", async () => {
  const topic = "reel:9003";
  const count = async () => (await redisRaw(redis.port, ["PUBSUB", "SHARDNUMSUB", `{${topic}}`])).split("\r\n")[3];
  assert.equal(await count(), ":0");
  const a = await listener(nodes[0], topic);
  await eventually(async () => (await count()) === ":1", 5000, "one subscription");
  const b = await listener(nodes[1], topic);
  await eventually(async () => (await count()) === ":2", 5000, "two subscriptions");
  await a.socket.close();
  await b.socket.close();
  await eventually(async () => (await count()) === ":0", 5000, "none once the clients left");
});

// A client that keeps its place in the cluster's stream (the first one it joined): every
// join, the first and those after a stream change, asks to recover from there. What arrives
// is recorded under the stream it came in.
function clusterClient(socket, topic) {
  const state = { cluster: undefined, current: undefined, lastInCluster: undefined, got: [], replies: [] };
  const channel = socket.channel(topic, () =>
    state.cluster === undefined ? {} : { last_seq: state.lastInCluster, epoch: state.cluster });
  channel.on("reel_update", (p) => {
    state.got.push({ epoch: state.current, seq: p.seq, from: p.from });
    if (state.current === state.cluster) state.lastInCluster = p.seq;
  });
  const first = new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", (reply) => {
        state.replies.push(reply);
        if (state.cluster === undefined) {
          state.cluster = reply.epoch;
          state.lastInCluster = reply.last_seq;
        }
        state.current = reply.epoch;
        resolve(reply);
      })
      .receive("error", reject);
  });
  return { socket, channel, state, first };
}

test("Redis away: degraded, each node delivers its own producers' messages under its own stream, and clients back in the cluster's recover what they missed", async () => {
  const topic = "reel:9005";
  const a = clusterClient(await connectPhoenix(nodes[0]), topic);
  const b = clusterClient(await connectPhoenix(nodes[1]), topic);
  await Promise.all([a.first, b.first]);
  const E = a.state.cluster;
  assert.equal(b.state.cluster, E, "one cluster stream");
  let r = await publish(nodes[0], topic, 20, "before");
  assert.equal(r.code, 0, r.stderr);
  await eventually(() => a.state.got.length >= 20 && b.state.got.length >= 20, 10000, "the first 20");
  const ctl = (d, ...args) => run(kronopctlBin(), ["--socket", d.controlSocket, ...args]);
  r = await ctl(nodes[1], "--json", "cluster");
  assert.equal(r.code, 0, r.stderr);
  const before = JSON.parse(r.stdout);
  assert.equal(before.cluster, true);
  assert.equal(before.node.up, true);
  assert.ok(Number(before.node.subscriptions) >= 1, r.stdout);
  const metrics = await fetch(`http://127.0.0.1:${nodes[1].port}/metrics`).then((x) => x.text());
  assert.match(metrics, /^kronop_cluster_up 1$/m);

  await redis.pause();
  await eventually(async () => (await ctl(nodes[1], "health")).code === 1, 10000, "health degraded");
  r = await ctl(nodes[1], "health");
  assert.match(r.stdout, /problem: the cluster's Redis \(redis:\/\/127\.0\.0\.1:\d+\) is unreachable/);
  r = await ctl(nodes[0], "cluster");
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /link +down/);
  // Each node's clients are told to join again (phx_error), and join the node's own stream.
  for (const [name, c] of [["A", a], ["B", b]]) {
    await eventually(() => c.state.replies.length >= 2, 10000, `node ${name}'s client on its own stream`);
    assert.notEqual(c.state.current, E, `node ${name}: another stream`);
    assert.equal(c.state.replies.at(-1).recovered, false);
  }
  // Published on A while Redis is away, more than wait in memory (--redis-max-waiting): A's
  // clients get them at once, under A's stream; the rest waits in A's log.
  const during = 5000;
  r = await publish(nodes[0], topic, during, "during");
  assert.equal(r.code, 0, r.stderr);
  await eventually(() => a.state.got.length >= 20 + during, 30000,
    `A's ${during} while cut off (has ${a.state.got.length})`);
  const local = a.state.got.slice(20);
  assert.ok(local.every((m) => m.epoch === a.state.current && m.from === "during"), JSON.stringify(local[0]));
  local.forEach((m, k) => assert.equal(m.seq, local[0].seq + k, "A's own stream is gap-free"));
  await sleep(300);
  assert.equal(b.state.got.length, 20, "B has nothing of A's while both are cut off");

  await redis.restart();
  await eventually(async () => (await ctl(nodes[1], "health")).code === 0, 15000, "health ok again");
  // Back in the cluster's stream, recovered from where each client left it: what A
  // published meanwhile was numbered by Redis once A forwarded it (from memory, then from
  // its log).
  for (const [name, c] of [["A", a], ["B", b]]) {
    await eventually(() => c.state.current === E && c.state.replies.at(-1).recovered === true, 15000,
      `node ${name}'s client back in the cluster's stream (${JSON.stringify(c.state.replies.at(-1))})`);
  }
  const inCluster = (c) => c.state.got.filter((m) => m.epoch === E);
  const total = 20 + during;
  await eventually(() => inCluster(a).length >= total && inCluster(b).length >= total, 30000,
    `${total} in the cluster's stream (A ${inCluster(a).length}, B ${inCluster(b).length})`);
  await sleep(300);
  for (const [name, c] of [["A", a], ["B", b]]) {
    const got = inCluster(c);
    assert.equal(got.length, total, `node ${name}: each once`);
    got.forEach((m, k) => {
      if (m.seq !== k + 1) assert.fail(`node ${name}: message ${k} has seq ${m.seq}`);
      assert.equal(m.from, k < 20 ? "before" : "during");
    });
  }
  r = await ctl(nodes[1], "--json", "cluster");
  assert.equal(JSON.parse(r.stdout).node.up, true);
  await a.socket.close();
  await b.socket.close();
});

test("a fourth node started at run time, told only the Redis URL, serves clients at once in the cluster's streams", async () => {
  const topic = "reel:9008";
  const a = clusterClient(await connectPhoenix(nodes[0]), topic);
  await a.first;
  let r = await publish(nodes[0], topic, 10, "before");
  assert.equal(r.code, 0, r.stderr);
  await eventually(() => a.state.got.length >= 10, 10000, "the first 10 on node A");
  const fourth = await startDaemon({ extraArgs: ["--redis", redis.url, "--redis-max-waiting", "2000"] });
  try {
    // A client that had the first 5 recovers the rest on the new node, then gets live ones,
    // including those the new node's own producer publishes.
    const socket = await connectPhoenix(fourth);
    const got = [];
    const channel = socket.channel(topic, { last_seq: 5, epoch: a.state.cluster });
    channel.on("reel_update", (p) => got.push(p));
    const reply = await withTimeout(
      new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject)),
      10000,
      "the join on the fourth node",
    );
    assert.equal(reply.recovered, true, JSON.stringify(reply));
    assert.equal(reply.epoch, a.state.cluster);
    r = await publish(fourth, topic, 10, "fourth");
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => got.length >= 15 && a.state.got.length >= 20, 10000,
      `the new node's client (${got.length}) and node A's (${a.state.got.length})`);
    await sleep(200);
    assert.deepEqual(got.map((p) => p.seq), Array.from({ length: 15 }, (_, k) => 6 + k));
    assert.deepEqual(a.state.got.map((m) => m.seq), Array.from({ length: 20 }, (_, k) => 1 + k));
    assert.deepEqual(a.state.got.slice(10).map((m) => m.from), Array(10).fill("fourth"));
    await socket.close();
  } finally {
    assert.deepEqual(await fourth.stop(), { code: 0, signal: null }, fourth.tail());
  }
  await a.socket.close();
});

test("a rolling restart of every node under a sustained publish loses nothing; each client reconnects and recovers gap-free", async () => {
  const topic = "reel:9009";
  const clients = [];
  for (const d of nodes) {
    for (let k = 0; k < 2; k++) clients.push(clusterClient(await connectPhoenix(d), topic));
  }
  await Promise.all(clients.map((c) => c.first));
  const E = clients[0].state.cluster;
  assert.ok(clients.every((c) => c.state.cluster === E), "one stream");
  // Published on node C (restarted last) and on node A (restarted first): while a node is
  // down its producer's ring holds what it publishes.
  const total = 6000;
  const publishers = [nodes[0], nodes[2]].map((d, i) =>
    run(kronopctlBin(),
      ["--shm-name", d.shmName, "publish", "--topic", topic, "--event", "reel_update",
        "--json", JSON.stringify({ from: `p${i}` }), "--count", String(total / 2), "--rate", "400",
        "--wait-ms", "30000"],
      120000));
  for (const d of nodes) {
    await sleep(1000);
    await d.restart({ signal: "SIGTERM", exitMs: 15000 });
  }
  const results = await Promise.all(publishers);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const inCluster = (c) => c.state.got.filter((m) => m.epoch === E);
  for (const [i, c] of clients.entries()) {
    await eventually(() => inCluster(c).length >= total, 60000, `client ${i} to have ${total} (has ${inCluster(c).length})`, 200);
  }
  await sleep(300);
  for (const [i, c] of clients.entries()) {
    const got = inCluster(c);
    assert.equal(got.length, total, `client ${i}: each once`);
    got.forEach((m, k) => {
      if (m.seq !== k + 1) assert.fail(`client ${i}: message ${k} has seq ${m.seq}`);
    });
    assert.ok(c.state.replies.length >= 2, `client ${i} rejoined after its node restarted`);
    assert.ok(c.state.replies.slice(1).every((r) => r.recovered === true), `client ${i}: ${JSON.stringify(c.state.replies)}`);
  }
  for (const c of clients) await c.socket.close();
});

test("an unusable Redis stops kronopd at start with a clear line: unreachable or wrong password 3, a bad URL 2", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kronop-cluster-"));
  try {
    const base = ["--port", "0", "--data-dir", path.join(dir, "data"), "--shm-name", `kronop-cl-${process.pid}`,
      "--control-socket", path.join(dir, "s.sock")];
    const closed = await freePort();
    let r = await run(kronopdBin(), [...base, "--redis", `redis://127.0.0.1:${closed}`]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /event=cluster_unusable .*error="connect: /);
    const pw = path.join(dir, "pw");
    writeFileSync(pw, "not-the-password\n", { mode: 0o600 });
    r = await run(kronopdBin(), [...base, "--redis", redis.url, "--redis-password-file", pw]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /event=cluster_unusable .*error="AUTH: /);
    r = await run(kronopdBin(), [...base, "--redis", "http://127.0.0.1:1"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /event=config_error key=redis /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`/dev/shm/kronop-cl-${process.pid}`, { force: true });
  }
});

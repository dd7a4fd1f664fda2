// kronopd on a Redis Cluster (several --redis seeds, or one seed that is a cluster): three
// real kronopd on loopback joined through a real 3-master Redis Cluster (redis_server.mjs),
// official phoenix clients on each node. Topics are sharded by hash slot: each topic's keys
// and shard channel live on the master of its slot, and every node talks to every master.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { eventually, freePort, kronopctlBin, kronopdBin, run, sleep, startDaemon } from "./helpers.mjs";
import { expectOneSequence, listener, publish } from "./cluster_checks.mjs";
import { Redis, RedisCluster, clusterKeySlotOwner, clusterSlots, redisCommand, stopCluster } from "./redis_server.mjs";

let cluster;
const nodes = [];

before(async () => {
  cluster = await new RedisCluster().start(3);
  // Node A is given one seed (the cluster is found out); B and C every master.
  const all = cluster.urls.flatMap((u) => ["--redis", u]);
  nodes.push(await startDaemon({ extraArgs: ["--redis", cluster.urls[1]] }));
  for (let i = 0; i < 2; i++) nodes.push(await startDaemon({ extraArgs: all }));
});

after(() => stopCluster(nodes, cluster));

// One reel topic served by each master, numbered from `from`: [{ topic, port }].
async function topicPerMaster(from) {
  const out = [];
  for (let n = from; out.length < 3; n++) {
    const topic = `reel:${n}`;
    const { port } = await clusterKeySlotOwner(cluster.ports[0], topic);
    if (!out.some((t) => t.port === port)) out.push({ topic, port });
  }
  return out;
}

test("kronopd finds the cluster from one seed; topics land on different masters, and every node delivers a producer's messages once, in order, under the same (epoch, seq)", async () => {
  const ctl = await run(kronopctlBin(), ["--socket", nodes[0].controlSocket, "--json", "cluster"]);
  assert.equal(ctl.code, 0, ctl.stderr);
  assert.equal(JSON.parse(ctl.stdout).node.up, true);
  assert.equal(Number(JSON.parse(ctl.stdout).node.redis_cluster.masters), 3, ctl.stdout);
  const topics = await topicPerMaster(9500);
  const clients = [];
  for (const { topic } of topics) {
    for (const d of nodes) clients.push({ topic, ...(await listener(d, topic)) });
  }
  const results = await Promise.all(topics.map(({ topic }, i) => publish(nodes[i % 3], topic, 200, topic)));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  for (const c of clients) {
    await eventually(() => c.got.length >= 200, 20000, `${c.topic}: 200 (has ${c.got.length})`);
  }
  await sleep(200); // room for a duplicate to show
  for (const c of clients) {
    assert.equal(c.got.length, 200, `${c.topic}: no duplicate`);
    c.got.forEach((p, k) => {
      if (p.seq !== k + 1 || p.from !== c.topic) assert.fail(`${c.topic}: message ${k} is ${JSON.stringify(p)}`);
    });
    const same = clients.filter((o) => o.topic === c.topic);
    assert.ok(same.every((o) => o.reply.epoch === c.reply.epoch), "one stream on every node");
  }
  // Each topic's stream is on its slot's master, and on no other.
  for (const { topic, port } of topics) {
    for (const p of cluster.ports) {
      const exists = await redisCommand(p, ["EXISTS", `{${topic}}:m`]);
      if (p === port) assert.equal(exists, 1, `${topic} on its master ${p}`);
      // Another master answers MOVED: it does not hold the key.
      else assert.ok(exists instanceof Error && exists.message.startsWith("MOVED"), `${topic} not on ${p}`);
    }
    // Every node is subscribed to the topic's shard channel, on that master.
    assert.deepEqual(await redisCommand(port, ["PUBSUB", "SHARDNUMSUB", `{${topic}}`]), [`{${topic}}`, 3]);
  }
  for (const c of clients) await c.socket.close();
  // And none holds a subscription any more once its clients left.
  for (const { topic, port } of topics) {
    await eventually(
      async () => (await redisCommand(port, ["PUBSUB", "SHARDNUMSUB", `{${topic}}`]))[1] === 0,
      5000,
      `${topic} unsubscribed`,
    );
  }
});

test("producers on three nodes on one topic make one gap-free sequence on the cluster", async () => {
  await expectOneSequence(nodes, "reel:9600", 150);
});

test("a client that leaves node B and rejoins on node C with last_seq and epoch recovers gap-free from the cluster", async () => {
  for (const { topic } of await topicPerMaster(9700)) {
    const first = await listener(nodes[1], topic);
    let r = await publish(nodes[0], topic, 50, "before");
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => first.got.length >= 50, 20000, `${topic}: the first 50 on node B`);
    const last = first.got.at(-1).seq;
    const epoch = first.reply.epoch;
    await first.socket.close();
    r = await publish(nodes[0], topic, 80, "missed");
    assert.equal(r.code, 0, r.stderr);
    const again = await listener(nodes[2], topic, { last_seq: last, epoch });
    assert.equal(again.reply.recovered, true, JSON.stringify(again.reply));
    assert.equal(again.reply.epoch, epoch);
    await eventually(() => again.got.length >= 80, 10000, `${topic}: 80 recovered (has ${again.got.length})`);
    await sleep(100);
    assert.equal(again.got.length, 80);
    again.got.forEach((p, k) => {
      if (p.seq !== last + k + 1 || p.from !== "missed") assert.fail(`${topic}: message ${k} is ${JSON.stringify(p)}`);
    });
    await again.socket.close();
  }
});

test("a master moving a slot: its topic's keys and channel follow, and delivery goes on", async () => {
  const metric = async (d, name) =>
    Number((await (await fetch(`http://127.0.0.1:${d.port}/metrics`, { signal: AbortSignal.timeout(5000) })).text()).match(new RegExp(`^${name} (\\d+)$`, "m"))?.[1]);
  const [{ topic, port: from }] = await topicPerMaster(9800);
  const to = cluster.ports.find((p) => p !== from);
  const clients = [];
  for (const d of nodes) clients.push(await listener(d, topic));
  let r = await publish(nodes[0], topic, 20, "before");
  assert.equal(r.code, 0, r.stderr);
  for (const c of clients) await eventually(() => c.got.length >= 20, 10000, "20 before the move");
  // Resharding by hand, as redis-cli --cluster reshard does: the keys migrate, then every
  // master is told the slot's new owner.
  const { slot } = await clusterKeySlotOwner(from, topic);
  const idOf = async (p) => (await clusterSlots(p)).find((x) => x.port === p).id;
  const [fromId, toId] = [await idOf(from), await idOf(to)];
  assert.equal(await redisCommand(to, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", fromId]), "OK");
  assert.equal(await redisCommand(from, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", toId]), "OK");
  for (let round = 0; ; round++) {
    const keys = await redisCommand(from, ["CLUSTER", "GETKEYSINSLOT", String(slot), "100"]);
    if (keys.length === 0) break;
    assert.ok(round < 100, `keys still in slot ${slot} on the old master: ${keys.join(" ")}`);
    const moved = await redisCommand(from, ["MIGRATE", "127.0.0.1", String(to), "", "0", "5000", "KEYS", ...keys]);
    assert.equal(moved, "OK");
  }
  for (const p of cluster.ports) {
    assert.equal(await redisCommand(p, ["CLUSTER", "SETSLOT", String(slot), "NODE", toId]), "OK");
  }
  // Whether the publishing node had read the new map already (its periodic refresh may fall
  // between the move and the publish on a slow build): if not, its publish is redirected.
  const mapRead = (await metric(nodes[1], "kronop_redis_cluster_map_changes_total")) >= 2;
  r = await publish(nodes[1], topic, 30, "after");
  assert.equal(r.code, 0, r.stderr);
  for (const [i, c] of clients.entries()) {
    await eventually(() => c.got.length >= 50, 20000, `node ${i}: 50 across the move (has ${c.got.length})`);
  }
  await sleep(200);
  for (const [i, c] of clients.entries()) {
    assert.equal(c.got.length, 50, `node ${i}: no duplicate`);
    c.got.forEach((p, k) => {
      if (p.seq !== k + 1) assert.fail(`node ${i}: message ${k} has seq ${p.seq}`);
    });
  }
  assert.equal(await redisCommand(to, ["EXISTS", `{${topic}}:m`]), 1, "the stream moved with its slot");
  // The publishing node was redirected (unless it had read the new map), and every node read
  // the new map.
  if (!mapRead) assert.ok((await metric(nodes[1], "kronop_redis_cluster_redirects_total")) >= 1);
  for (const d of nodes) {
    await eventually(async () => (await metric(d, "kronop_redis_cluster_map_changes_total")) >= 2, 10000, "the new map read");
  }
  for (const c of clients) await c.socket.close();
});

test("seeds that are not a Redis Cluster, or a database other than 0, stop kronopd at start with a clear line", async () => {
  const plain = await new Redis().start();
  const dir = mkdtempSync(path.join(os.tmpdir(), "kronop-rc-"));
  try {
    const base = ["--port", "0", "--data-dir", path.join(dir, "data"), "--shm-name", `kronop-rc-${process.pid}`,
      "--control-socket", path.join(dir, "s.sock")];
    let r = await run(kronopdBin(), [...base, "--redis", plain.url, "--redis", cluster.urls[0]]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /event=cluster_unusable .*is not a Redis Cluster/);
    r = await run(kronopdBin(), [...base, "--redis", `${cluster.urls[0]}/2`, "--redis", cluster.urls[1]]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /event=config_error key=redis .*only database 0/);
    // Every seed unreachable: each is named, then the exit.
    const closed = [await freePort(), await freePort()];
    r = await run(kronopdBin(), [...base, ...closed.flatMap((p) => ["--redis", `redis://127.0.0.1:${p}`])]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal((r.stderr.match(/event=cluster_seed_unusable /g) ?? []).length, 2, r.stderr);
  } finally {
    await plain.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(`/dev/shm/kronop-rc-${process.pid}`, { force: true });
  }
});

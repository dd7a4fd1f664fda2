// What the cluster's tests (cluster.test.mjs on one Redis, redis_cluster.test.mjs on a Redis
// Cluster) do alike: listen to a topic on a node, publish through a node's rings, and check
// that producers on every node made one gap-free sequence, the same everywhere.

import assert from "node:assert/strict";
import { connectPhoenix, eventually, kronopctlBin, run, sleep, withTimeout } from "./helpers.mjs";

// A phoenix socket on `daemon` joined to `topic` (with `params`), recording the reel_updates
// that arrive from the join on (a recovery's messages come right after its reply).
export async function listener(daemon, topic, params = {}) {
  const socket = await connectPhoenix(daemon);
  const got = [];
  const channel = socket.channel(topic, params);
  channel.on("reel_update", (p) => got.push(p));
  const reply = await withTimeout(
    new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject)),
    10000,
    `the join of ${topic}`,
  );
  return { socket, got, reply };
}

// `count` reel_updates {from: tag} on `topic`, through `daemon`'s rings (kronopctl publish).
export function publish(daemon, topic, count, tag) {
  return run(
    kronopctlBin(),
    ["--shm-name", daemon.shmName, "publish", "--topic", topic, "--event", "reel_update",
      "--json", JSON.stringify({ from: tag }), "--count", String(count)],
    30000,
  );
}

// Producers on every node publish `each` on `topic` at once; a client on every node gets
// them all once, seq 1..n, the same message at each seq, `each` from every node.
export async function expectOneSequence(nodes, topic, each) {
  const clients = [];
  for (const d of nodes) clients.push(await listener(d, topic));
  const results = await Promise.all(nodes.map((d, i) => publish(d, topic, each, `n${i}`)));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const total = each * nodes.length;
  for (const [i, c] of clients.entries()) {
    await eventually(() => c.got.length >= total, 20000, `node ${i} to have ${total} (has ${c.got.length})`);
  }
  await sleep(200); // room for a duplicate to show
  const order = clients[0].got.map((p) => `${p.seq}:${p.from}`);
  for (const [i, c] of clients.entries()) {
    assert.equal(c.got.length, total, `node ${i}: no duplicate`);
    c.got.forEach((p, k) => {
      if (p.seq !== k + 1) assert.fail(`node ${i}: message ${k} has seq ${p.seq}`);
    });
    assert.deepEqual(c.got.map((p) => `${p.seq}:${p.from}`), order, `node ${i}: the same message at each seq`);
  }
  for (const [i] of nodes.entries()) {
    assert.equal(order.filter((s) => s.endsWith(`:n${i}`)).length, each, `n${i}`);
  }
  for (const c of clients) await c.socket.close();
}

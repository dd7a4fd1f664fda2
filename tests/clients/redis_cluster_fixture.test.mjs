// The Redis Cluster fixture itself (redis_server.mjs): three masters come up joined, each
// serving its third of the slots, and a key sent to a master that does not serve it is
// redirected to the one that does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { RedisCluster, clusterKeySlotOwner, clusterSlots, redisCommand } from "./redis_server.mjs";

test("a 3-master Redis Cluster: every node lists the same three ranges; three keys, three owners", async () => {
  const cluster = await new RedisCluster().start(3);
  try {
    assert.equal(cluster.urls.length, 3);
    assert.equal(new Set(cluster.ports).size, 3);
    const ranges = await clusterSlots(cluster.ports[0]);
    assert.deepEqual(
      ranges.map((r) => [r.first, r.last, r.port]),
      [[0, 5460, cluster.ports[0]], [5461, 10921, cluster.ports[1]], [10922, 16383, cluster.ports[2]]],
    );
    for (const port of cluster.ports.slice(1)) assert.deepEqual(await clusterSlots(port), ranges);

    // Slots as Redis 7 computes them: 866, 6469 and 12182, one in each third.
    const owners = [];
    for (const key of ["hello", "zap", "foo"]) {
      const { slot, port } = await clusterKeySlotOwner(cluster.ports[1], key);
      owners.push(port);
      const elsewhere = cluster.ports.find((p) => p !== port);
      const moved = await redisCommand(elsewhere, ["SPUBLISH", key, "m"]);
      assert.ok(moved instanceof Error);
      assert.equal(moved.message, `MOVED ${slot} 127.0.0.1:${port}`);
      assert.equal(await redisCommand(port, ["SPUBLISH", key, "m"]), 0);
    }
    assert.deepEqual(owners, cluster.ports);
  } finally {
    await cluster.stop();
  }
});

// Presence and counters across the cluster (--redis): three real kronopd on loopback joined
// through a real redis-server, official phoenix clients on each. Interactions are counted
// by Redis, so every node shows the same totals; who is on a reel, and each user's status,
// is the cluster's; a node killed with -9 has its users leave everywhere within
// --redis-presence-ttl.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connectPhoenix, eventually, joinOk, startDaemon } from "./helpers.mjs";
import { Redis } from "./redis_server.mjs";

const T = { timeout: 60000 };
let redis;
const nodes = [];

before(async () => {
  redis = await new Redis().start();
  for (let i = 0; i < 3; i++) {
    nodes.push(await startDaemon({ extraArgs: ["--redis", redis.url] }));
  }
});

after(async () => {
  const exits = [];
  for (const d of nodes) exits.push(await d.stop());
  await redis.stop();
  for (const [i, e] of exits.entries()) {
    assert.deepEqual(e, { code: 0, signal: null }, `node ${i}: ${nodes[i].tail()}`);
  }
});

function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel
      .push(event, payload)
      .receive("ok", (r) => resolve({ status: "ok", r }))
      .receive("error", (r) => resolve({ status: "error", r }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

// `user` (anonymous when null) on `daemon`, joined to `topic`; what arrives is recorded.
async function member(daemon, user, topic) {
  const socket = await connectPhoenix(daemon, user ? { authToken: await daemon.token(user) } : {});
  const got = { interaction: [], reel_update: [] };
  const r = await joinOk(socket, topic);
  for (const ev of Object.keys(got)) r.channel.on(ev, (p) => got[ev].push(p));
  return { socket, channel: r.channel, got };
}

test("likes from clients on two nodes are counted once each, with the same totals on every node", T, async () => {
  const topic = "reel:9100";
  const alice = await member(nodes[0], "alice", topic);
  const bob = await member(nodes[1], "bob", topic);
  const carol = await member(nodes[2], null, topic);
  const sent = [];
  for (let i = 0; i < 3; i++) sent.push(push(alice.channel, "like", {}));
  for (let i = 0; i < 2; i++) sent.push(push(bob.channel, "like", {}));
  sent.push(push(bob.channel, "comment", { text: "across hosts" }));
  for (const r of await Promise.all(sent)) assert.equal(r.status, "ok", JSON.stringify(r));

  const everyone = [alice, bob, carol];
  await eventually(
    () => everyone.every((m) => m.got.interaction.length === 6),
    10000,
    "six interactions on every node",
  );
  // The same messages, with the same totals and seqs, on every node: each like counted once.
  const seen = (m) => m.got.interaction.map((p) => [p.seq, p.kind, p.like_count, p.comment_count]);
  assert.deepEqual(seen(bob), seen(alice));
  assert.deepEqual(seen(carol), seen(alice));
  assert.deepEqual(
    alice.got.interaction.map((p) => (p.like_count ?? 0) + (p.comment_count ?? 0)),
    [1, 2, 3, 4, 5, 6],
  );
  // The last counter update anywhere: the cluster's totals.
  const totals = { likes: 5, comments: 1, shares: 0 };
  await eventually(
    () => everyone.every((m) => JSON.stringify(m.got.reel_update.at(-1)?.update_data) === JSON.stringify(totals)),
    10000,
    "the counter updates to reach the totals on every node",
  );
  // ... and the REST API of each node says so.
  for (const d of nodes) {
    const body = await (await fetch(`http://127.0.0.1:${d.port}/api/v1/reels/9100/updates`)).json();
    assert.deepEqual(body.counters, totals, `node ${d.port}`);
  }
  for (const m of everyone) await m.socket.close();
});

// Presence and counters across the cluster (--redis): three real kronopd on loopback joined
// through a real redis-server, official phoenix clients on each. Interactions are counted
// by Redis, so every node shows the same totals; who is on a reel, and each user's status,
// is the cluster's; a node killed with -9 has its users leave everywhere within
// --redis-presence-ttl.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";
import { connectPhoenix, eventually, joinOk, kronopctlBin, push, run, sleep, startDaemon } from "./helpers.mjs";
import { Redis, stopCluster } from "./redis_server.mjs";

const T = { timeout: 60000 };
// Every node of this file's cluster: presences expire 3 s after a node's last heartbeat.
const TTL_S = 3;
const nodeArgs = (url) => ["--redis", url, "--redis-presence-ttl", String(TTL_S), "--presence-interval-ms", "50"];
let redis;
const nodes = [];

before(async () => {
  redis = await new Redis().start();
  for (let i = 0; i < 3; i++) nodes.push(await startDaemon({ extraArgs: nodeArgs(redis.url) }));
});

after(() => stopCluster(nodes, redis));

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

// `user` on `daemon`, joined to `topic` with the official client's Presence.
async function viewer(daemon, user, topic) {
  const socket = await connectPhoenix(daemon, { authToken: await daemon.token(user) });
  const channel = socket.channel(topic, {});
  const presence = new Presence(channel);
  await new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", reject).receive("timeout", reject);
  });
  return { socket, channel, presence };
}

// "alice:1,bob:2": who a Presence lists, with their sockets.
const users = (v) =>
  v.presence
    .list((id, { metas }) => `${id}:${metas.length}`)
    .sort()
    .join(",");

const ctlJson = async (d, ...args) => {
  const r = await run(kronopctlBin(), ["--socket", d.controlSocket, "--json", ...args]);
  return { code: r.code, body: JSON.parse(r.stdout) };
};

test("Presence.list() on every node shows the users of every node; joins and leaves reach them all", T, async () => {
  const topic = "reel:9200";
  const alice = await viewer(nodes[0], "alice", topic);
  const bob = await viewer(nodes[1], "bob", topic);
  const carol = await viewer(nodes[2], "carol", topic);
  const carol2 = await viewer(nodes[0], "carol", topic); // one user, sockets on two nodes
  const views = [alice, bob, carol, carol2];
  for (const [i, v] of views.entries()) {
    await eventually(() => users(v) === "alice:1,bob:1,carol:2", 5000, `view ${i}: ${users(v)}`);
  }
  // One meta per socket, under the phx_ref its own node gave it, the same everywhere.
  const refs = (v) =>
    v.presence
      .list((id, { metas }) => metas.map((m) => `${id}=${m.phx_ref}`))
      .flat()
      .sort()
      .join(",");
  for (const v of views) assert.equal(refs(v), refs(alice));

  await bob.socket.close();
  carol.channel.leave();
  for (const v of [alice, carol2]) {
    await eventually(() => users(v) === "alice:1,carol:1", 5000, `bob and one carol gone: ${users(v)}`);
  }
  for (const v of [alice, carol, carol2]) await v.socket.close();
});

test("a node whose clients all left a reel forgets the others' users there, and asks again when one comes back", T, async () => {
  const topic = "reel:9202";
  const alice = await viewer(nodes[0], "alice", topic);
  const first = await viewer(nodes[2], "x", topic);
  await eventually(() => users(first) === "alice:1,x:1", 5000, `alice on node C: ${users(first)}`);
  await first.socket.close();
  // Node C holds the reel no more, and does not hear of alice leaving.
  await sleep(300);
  await alice.socket.close();
  await sleep(300);
  const bob = await viewer(nodes[1], "bob", topic);
  const again = await viewer(nodes[2], "y", topic);
  await eventually(() => users(again) === "bob:1,y:1", 5000, `bob, asked for again: ${users(again)}`);
  await sleep(500);
  assert.equal(users(again), "bob:1,y:1", "no user of before");
  for (const v of [bob, again]) await v.socket.close();
});

test("a node killed with -9 has its users leave every other node within --redis-presence-ttl; kronopctl cluster lists the nodes", T, async (t) => {
  const topic = "reel:9201";
  const extra = await startDaemon({ extraArgs: nodeArgs(redis.url) });
  try {
    const dave = await viewer(extra, "dave", topic);
    const watchers = [await viewer(nodes[0], "w0", topic), await viewer(nodes[1], "w1", topic)];
    for (const w of watchers) await eventually(() => users(w).includes("dave:1"), 5000, `dave: ${users(w)}`);

    // Every node is listed, with its address and connections, this one marked.
    let ids;
    await eventually(
      async () => {
        const { body } = await ctlJson(nodes[0], "cluster");
        ids = body.node.members.map((m) => m.id);
        return ids.length === 4;
      },
      5000,
      "four members",
    );
    const extraId = (await ctlJson(extra, "cluster")).body.node.node_id;
    let code, body, listed;
    // Its connections as of its last heartbeat (a fifth of the TTL ago at most).
    await eventually(
      async () => {
        ({ code, body } = await ctlJson(nodes[0], "cluster"));
        listed = body.node.members.find((m) => m.id === extraId);
        return Number(listed?.connections) === 1;
      },
      5000,
      "the new node's connection",
    );
    assert.equal(code, 0);
    const self = body.node.members.find((m) => m.self);
    assert.equal(self.id, body.node.node_id);
    assert.match(self.address, new RegExp(`:${nodes[0].port}$`));
    assert.ok(Number(listed.heartbeat_age_ms) < TTL_S * 1000);

    const killedAt = Date.now();
    extra.proc.kill("SIGKILL");
    for (const w of watchers) {
      await eventually(() => !users(w).includes("dave"), 10000, `dave gone: ${users(w)}`);
    }
    const took = Date.now() - killedAt;
    t.diagnostic(`the killed node's user left the others ${took} ms after kill -9 (TTL ${TTL_S} s)`);
    // Within the TTL of its last heartbeat; then the presence interval and the delivery to
    // the client (slower under the sanitizers).
    assert.ok(took <= TTL_S * 1000 + 1500, `dave left after ${took} ms`);
    await eventually(
      async () => !(await ctlJson(nodes[1], "cluster")).body.node.members.some((m) => m.id === extraId),
      5000,
      "the dead node off the list",
    );
    assert.ok(Number((await ctlJson(nodes[0], "cluster")).body.node.nodes_dropped) >= 1);
    const metrics = await (await fetch(`http://127.0.0.1:${nodes[0].port}/metrics`)).text();
    assert.match(metrics, /^kronop_cluster_nodes_dropped_total [1-9]\d*$/m);
    assert.match(metrics, /^kronop_cluster_presence_messages_total\{direction="received"\} [1-9]\d*$/m);
    await eventually(
      async () => /^kronop_cluster_members 3$/m.test(await (await fetch(`http://127.0.0.1:${nodes[0].port}/metrics`)).text()),
      5000,
      "three members in /metrics",
    );
    for (const w of watchers) await w.socket.close();
    await dave.socket.close().catch(() => {});
  } finally {
    await extra.stop().catch(() => {});
  }
});

test("a node that stops cleanly leaves the members' list at once", T, async () => {
  const extra = await startDaemon({ extraArgs: nodeArgs(redis.url) });
  const id = (await ctlJson(extra, "cluster")).body.node.node_id;
  await eventually(
    async () => (await ctlJson(nodes[2], "cluster")).body.node.members.some((m) => m.id === id),
    5000,
    "the new node listed",
  );
  assert.deepEqual(await extra.stop(), { code: 0, signal: null });
  // Gone at the next heartbeat of the others (a fifth of the TTL), not after the TTL.
  const stoppedAt = Date.now();
  await eventually(
    async () => !(await ctlJson(nodes[2], "cluster")).body.node.members.some((m) => m.id === id),
    5000,
    "the stopped node off the list",
  );
  assert.ok(Date.now() - stoppedAt < TTL_S * 1000, "before the TTL");
});

// GET /api/v1/users/:id/presence on `d` (trusted loopback, the test default).
const userStatus = async (d, user) => {
  const r = await fetch(`http://127.0.0.1:${d.port}/api/v1/users/${user}/presence`);
  return r.status === 200 ? r.json() : { http: r.status };
};
const statusOf = (b) => `${b.status}/${b.connections ?? 0}/${b.current_reel ?? 0}/${b.activity ?? ""}`;

test("a user's status is the cluster's: sockets on every node count, a status set on one node reads the same on all", T, async () => {
  const user = "erin";
  assert.equal((await userStatus(nodes[1], user)).http, 404, "never seen anywhere");
  const a = await connectPhoenix(nodes[0], { authToken: await nodes[0].token(user) });
  const b = await connectPhoenix(nodes[1], { authToken: await nodes[1].token(user) });
  for (const d of nodes) {
    await eventually(async () => statusOf(await userStatus(d, user)) === "online/2/0/", 5000, `online with 2 sockets on ${d.port}`);
  }
  // kronopctl answers the same on a node where the user has no socket.
  const ctl = await ctlJson(nodes[2], "presence", "user", user);
  assert.equal(ctl.code, 0);
  assert.equal(ctl.body.status, "online");
  assert.equal(Number(ctl.body.connections), 2);

  // A status set on node C, where the user has no socket, is the one every node reads.
  const posted = await fetch(`http://127.0.0.1:${nodes[2].port}/api/v1/users/${user}/presence`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ status: "away", current_reel: 9300, activity: "in a call" }),
  });
  assert.equal(posted.status, 200);
  assert.equal(statusOf(await posted.json()), "away/2/9300/in a call", "the POST answers with the cluster's view");
  for (const d of nodes) assert.equal(statusOf(await userStatus(d, user)), "away/2/9300/in a call", `node ${d.port}`);

  // One socket closing leaves the other; the last one anywhere makes the user offline.
  await a.close();
  for (const d of nodes) {
    await eventually(async () => statusOf(await userStatus(d, user)) === "away/1/9300/in a call", 5000, `one socket left on ${d.port}`);
  }
  await b.close();
  for (const d of nodes) {
    await eventually(async () => statusOf(await userStatus(d, user)) === "offline/0/0/", 5000, `offline on ${d.port}`);
  }
  const seen = Date.parse((await userStatus(nodes[0], user)).last_seen);
  assert.ok(Math.abs(Date.now() - seen) < 5000, "last seen when the last socket closed");
  const metrics = await (await fetch(`http://127.0.0.1:${nodes[1].port}/metrics`)).text();
  assert.match(metrics, /^kronop_cluster_user_records_total\{op="read"\} [1-9]\d*$/m);
  assert.match(metrics, /^kronop_cluster_user_records_total\{op="write"\} [1-9]\d*$/m);
  assert.match(metrics, /^kronop_cluster_user_records_total\{op="failed"\} 0$/m);
});

test("a user whose sockets were on a node killed with -9 reads offline within --redis-presence-ttl", T, async () => {
  const user = "frank";
  const extra = await startDaemon({ extraArgs: nodeArgs(redis.url) });
  try {
    const s = await connectPhoenix(extra, { authToken: await extra.token(user) });
    await eventually(async () => statusOf(await userStatus(nodes[0], user)) === "online/1/0/", 5000, "online on node A");
    const killedAt = Date.now();
    extra.proc.kill("SIGKILL");
    await eventually(async () => statusOf(await userStatus(nodes[0], user)) === "offline/0/0/", 10000, "offline after the kill");
    assert.ok(Date.now() - killedAt <= TTL_S * 1000 + 1500, `offline after ${Date.now() - killedAt} ms`);
    await s.close().catch(() => {});
  } finally {
    await extra.stop().catch(() => {});
  }
});

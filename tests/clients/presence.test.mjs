// Phoenix Presence with the official client's Presence class: presence_state on join,
// batched presence_diff for joins and leaves, one key per user with a meta per socket;
// users' own status (online / away / offline, reel, activity, last seen) from their channel
// and the REST API.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Presence } from "phoenix";

import { eventually, join, joinOk, sleep, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon({ extraArgs: ["--presence-interval-ms", "50"] });
});

after(async () => {
  if (daemon) await daemon.stop();
});

const http = (path, init) => fetch(`http://127.0.0.1:${daemon.port}${path}`, init);

// A socket of `user` joined to `topic`, with a Presence on the channel.
async function viewer(user, topic) {
  const opts = user ? { authToken: await daemon.token(user) } : {};
  const socket = await daemon.phoenix(opts);
  const channel = socket.channel(topic, {});
  const presence = new Presence(channel);
  const syncs = [];
  presence.onSync(() => syncs.push(presence.list((id, { metas }) => ({ id, n: metas.length }))));
  await new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", reject).receive("timeout", reject);
  });
  return { socket, channel, presence, syncs };
}

const users = (presence) =>
  presence
    .list((id, { metas }) => `${id}:${metas.length}`)
    .sort()
    .join(",");

test("Presence.list() sees two users join and one leave", T, async () => {
  const watcher = await viewer("watcher", "reel:700");
  await eventually(() => users(watcher.presence) === "watcher:1", 3000, "the watcher itself");

  const alice = await viewer("alice", "reel:700");
  const bob = await viewer("bob", "reel:700");
  await eventually(
    () => users(watcher.presence) === "alice:1,bob:1,watcher:1",
    3000,
    `alice and bob in the watcher's list (${users(watcher.presence)})`,
  );
  // Everyone converges on the same list, whoever joined first.
  await eventually(() => users(alice.presence) === "alice:1,bob:1,watcher:1", 3000, "alice's view");

  // Metas carry phx_ref and online_at, as Phoenix.Presence's do.
  const [meta] = watcher.presence.list((id, { metas }) => (id === "bob" ? metas : null)).filter(Boolean)[0];
  assert.equal(typeof meta.phx_ref, "string");
  assert.ok(Math.abs(meta.online_at - Date.now()) < 60000, `online_at ${meta.online_at}`);

  await bob.socket.close();
  await eventually(
    () => users(watcher.presence) === "alice:1,watcher:1",
    3000,
    `bob gone from the watcher's list (${users(watcher.presence)})`,
  );
  alice.channel.leave();
  await eventually(() => users(watcher.presence) === "watcher:1", 3000, "alice's leave");
});

test("one user with two sockets is one key with two metas", T, async () => {
  const watcher = await viewer("w2", "reel:701");
  await viewer("carol", "reel:701");
  const second = await viewer("carol", "reel:701");
  await eventually(() => users(watcher.presence) === "carol:2,w2:1", 3000, "carol twice");
  await second.socket.close();
  await eventually(() => users(watcher.presence) === "carol:1,w2:1", 3000, "one carol left");
});

test("anonymous viewers see presence but are not listed", T, async () => {
  await viewer("dave", "reel:702");
  const anon = await viewer(null, "reel:702");
  await eventually(() => users(anon.presence) === "dave:1", 3000, "dave, seen anonymously");
  await sleep(150);
  assert.equal(users(anon.presence), "dave:1");
});

test("joins are batched: many joins, far fewer presence_diff messages", T, async () => {
  const watcher = await viewer("w3", "reel:703");
  await eventually(() => users(watcher.presence) === "w3:1", 3000, "the watcher itself");
  const diffsBefore = watcher.socket.frames.filter((f) => f.event === "presence_diff").length;
  const n = 30;
  await Promise.all(Array.from({ length: n }, (_, i) => viewer(`v${i}`, "reel:703")));
  await eventually(() => watcher.presence.list().length === n + 1, 5000, `${n} viewers listed`);
  const diffs = watcher.socket.frames.filter((f) => f.event === "presence_diff").length - diffsBefore;
  assert.ok(diffs >= 1 && diffs < n, `${diffs} presence_diff messages for ${n} joins`);
});

test("presence_state comes after the join reply, with the join's join_ref", T, async () => {
  const socket = await daemon.phoenix({ authToken: await daemon.token("erin") });
  const r = await joinOk(socket, "reel:704");
  await eventually(() => socket.frames.some((f) => f.event === "presence_state"), 3000, "state");
  const state = socket.frames.find((f) => f.event === "presence_state");
  assert.equal(state.join_ref, r.channel.joinRef());
  assert.deepEqual(state.payload, {}, "the state as of the last diff: erin arrives in the next");
  await eventually(
    () => socket.frames.some((f) => f.event === "presence_diff" && f.payload.joins.erin),
    3000,
    "erin's own join in a diff",
  );
});

test("user status: channel push and REST, with last seen", T, async () => {
  const socket = await daemon.phoenix({ authToken: await daemon.token("frank") });
  const own = await joinOk(socket, "user:frank", { events: ["presence_update"] });
  let res = await http("/api/v1/users/frank/presence");
  assert.equal(res.status, 200);
  let body = await res.json();
  assert.equal(body.status, "online");
  assert.equal(body.connections, 1);

  const reply = await new Promise((resolve) => {
    own.channel
      .push("update_presence", { status: "away", current_reel: 704, activity: "commenting" })
      .receive("ok", (r) => resolve({ status: "ok", r }))
      .receive("error", (r) => resolve({ status: "error", r }));
  });
  assert.equal(reply.status, "ok", JSON.stringify(reply));
  assert.equal(reply.r.status, "away");
  const update = await own.queues.presence_update.next(5000);
  assert.equal(update.user_id, "frank");
  assert.equal(update.status, "away");
  assert.equal(update.current_reel, 704);

  body = await (await http("/api/v1/users/frank/presence")).json();
  assert.deepEqual(
    { status: body.status, current_reel: body.current_reel, activity: body.activity },
    { status: "away", current_reel: 704, activity: "commenting" },
  );

  const bad = await new Promise((resolve) => {
    own.channel
      .push("update_presence", { status: "dancing" })
      .receive("ok", (r) => resolve({ status: "ok", r }))
      .receive("error", (r) => resolve({ status: "error", r }));
  });
  assert.deepEqual(bad, { status: "error", r: { reason: "status must be one of online, away, offline" } });

  const before = Date.now();
  await socket.close();
  await eventually(
    async () => (await (await http("/api/v1/users/frank/presence")).json()).status === "offline",
    3000,
    "frank offline after his last socket closed",
  );
  body = await (await http("/api/v1/users/frank/presence")).json();
  assert.equal(body.connections, 0);
  assert.ok(Math.abs(Date.parse(body.last_seen) - before) < 5000, body.last_seen);
  assert.equal((await http("/api/v1/users/nobody-ever/presence")).status, 404);
});

test("presence is in /metrics", T, async () => {
  await viewer("gina", "reel:705");
  await sleep(120);
  const text = await (await http("/metrics")).text();
  const value = (name) => Number(text.split("\n").find((l) => l.startsWith(`${name} `))?.split(" ")[1]);
  assert.ok(value("kronop_presences") >= 1, text);
  assert.ok(value("kronop_users_online") >= 1);
  assert.ok(value("kronop_presence_diffs_total") >= 1);
  const r = await join(await daemon.phoenix(), "reel:705");
  assert.equal(r.status, "ok");
});

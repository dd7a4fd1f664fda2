// The official phoenix client (npm `phoenix`, unchanged; `ws` as its transport in Node)
// joins channels on a real kronopd and receives what `kronopctl publish` sends.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { join, joinOk, sleep, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;
let socket;

before(async () => {
  // Three I/O loops whatever the machine: sockets are handed to the loops in turn, so the
  // tests with several sockets on one topic cross loops.
  daemon = await startDaemon({ extraArgs: ["--io-threads", "3"] });
  socket = await daemon.phoenix();
});

after(async () => {
  if (daemon) await daemon.stop();
});

test("join reel:123, receive reel_update with the payload and seq 1, 2, 3", T, async () => {
  const { response, queues } = await joinOk(socket, "reel:123", { events: ["reel_update"] });
  // Where the topic's stream stands: its epoch (a safe integer, for JS) and last seq.
  assert.deepEqual(Object.keys(response), ["epoch", "last_seq"], "the join reply's response");
  assert.ok(Number.isSafeInteger(response.epoch) && response.epoch > 0, `epoch ${response.epoch}`);
  assert.equal(response.last_seq, 0);

  for (const views of [5, 6, 7]) {
    await daemon.publish("reel:123", "reel_update", { views, title: "caf\u00e9 \u{1F3AC}" });
  }
  for (const [i, views] of [5, 6, 7].entries()) {
    const payload = await queues.reel_update.next(5000, `reel_update #${i + 1} on reel:123`);
    assert.deepEqual(payload, { seq: i + 1, views, title: "caf\u00e9 \u{1F3AC}" });
    assert.equal(Object.keys(payload)[0], "seq", "seq is the payload's first key");
  }
});

test("seq counts per topic: another reel starts at 1", T, async () => {
  const { queues } = await joinOk(socket, "reel:124", { events: ["reel_update"] });
  await daemon.publish("reel:124", "reel_update", { views: 1 });
  assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 1 });
});

test("a socket gets only its joined topics, with the event name kronopctl gave", T, async () => {
  // Two sockets, so that the server's routing is tested (one socket's client would drop
  // frames of topics it did not join by itself).
  const sa = await daemon.phoenix();
  const sb = await daemon.phoenix();
  const a = await joinOk(sa, "reel:200", { events: ["reel_update", "interaction"] });
  const b = await joinOk(sb, "reel:201", { events: ["reel_update", "interaction"] });

  await daemon.publish("reel:200", "interaction", { kind: "like", user_id: "u1" });
  // "like" is Interaction.KIND_LIKE's word: the like is counted and carries the totals.
  assert.deepEqual(await a.queues.interaction.next(5000), {
    seq: 1,
    reel_id: 200,
    user_id: "u1",
    kind: "like",
    like_count: 1,
  });
  // ... and the reel's counters follow as a reel_update on the same topic.
  const counters = await a.queues.reel_update.next(5000);
  assert.deepEqual(counters.update_data, { likes: 1, comments: 0, shares: 0 });
  await daemon.publish("reel:201", "reel_update", { views: 9 });
  assert.deepEqual(await b.queues.reel_update.next(5000), { seq: 1, views: 9 });
  await sleep(200); // room for a wrongly routed frame to arrive

  const topics = (s) => s.frames.filter((m) => m.topic !== "phoenix").map((m) => m.topic);
  assert.deepEqual([...new Set(topics(sa))], ["reel:200"], "topics seen by the reel:200 socket");
  assert.deepEqual([...new Set(topics(sb))], ["reel:201"], "topics seen by the reel:201 socket");
  assert.equal(a.queues.reel_update.length, 0);
  assert.equal(b.queues.interaction.length, 0);
});

test("system can be joined with an admin token and receives system_notice", T, async () => {
  const refused = await join(socket, "system");
  refused.channel.leave();
  assert.deepEqual(refused.response, { reason: "unauthorized" }, "an anonymous socket");
  const admin = await daemon.phoenix({ authToken: await daemon.token("ops", { admin: true }) });
  const { response, queues } = await joinOk(admin, "system", { events: ["system_notice"] });
  assert.equal(response.last_seq, 0);
  await daemon.publish("system", "system_notice", { text: "maintenance at 02:00" });
  assert.deepEqual(await queues.system_notice.next(5000), {
    seq: 1,
    text: "maintenance at 02:00",
  });
});

test("four clients on one reel, spread over the I/O loops, all receive the same update", T, async () => {
  const sockets = [socket, await daemon.phoenix(), await daemon.phoenix(), await daemon.phoenix()];
  const joins = [];
  for (const s of sockets) joins.push(await joinOk(s, "reel:300", { events: ["reel_update"] }));
  await daemon.publish("reel:300", "reel_update", { views: 42 });
  await daemon.publish("reel:300", "reel_update", { views: 43 });
  for (const [i, j] of joins.entries()) {
    assert.deepEqual(await j.queues.reel_update.next(5000, `#1 at socket ${i}`), { seq: 1, views: 42 });
    assert.deepEqual(await j.queues.reel_update.next(5000, `#2 at socket ${i}`), { seq: 2, views: 43 });
  }
  // One leaves: the others still get updates; the loop it was on may have no subscriber left.
  joins[1].channel.leave();
  await sleep(100);
  await daemon.publish("reel:300", "reel_update", { views: 44 });
  for (const i of [0, 2, 3]) {
    assert.deepEqual(await joins[i].queues.reel_update.next(5000), { seq: 3, views: 44 });
  }
  await sleep(200);
  assert.equal(joins[1].queues.reel_update.length, 0, "the socket that left got nothing");
});

test("an unmatched topic's join gets the error reply {reason: 'unmatched topic'}", T, async () => {
  for (const topic of ["nope:1", "reels:1", "reel", "system:1"]) {
    const r = await join(socket, topic);
    r.channel.leave(); // stops the client's automatic rejoin of an errored channel
    assert.equal(r.status, "error", `join ${topic} should be refused`);
    assert.deepEqual(r.response, { reason: "unmatched topic" }, `reply to join ${topic}`);
  }
});

test("user:1 is refused with {reason: 'unauthorized'} to an anonymous socket", T, async () => {
  const r = await join(socket, "user:1");
  r.channel.leave();
  assert.equal(r.status, "error");
  assert.deepEqual(r.response, { reason: "unauthorized" });
});

test("the socket is still usable after refused joins", T, async () => {
  const { queues } = await joinOk(socket, "reel:400", { events: ["reel_update"] });
  await daemon.publish("reel:400", "reel_update", { views: 3 });
  assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 3 });
});

test("kronopctl refuses a payload with a top-level seq (exit 2); nothing is sent", T, async () => {
  const { queues } = await joinOk(socket, "reel:500", { events: ["reel_update"] });
  const refused = await daemon.publishRaw("reel:500", "reel_update", { seq: 99, views: 1 });
  assert.equal(refused.code, 2, `kronopctl exit code (stderr: ${refused.stderr.trim()})`);
  await daemon.publish("reel:500", "reel_update", { views: 2 });
  assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 2 });
});

test("after a leave the channel receives nothing more", T, async () => {
  const { channel, queues } = await joinOk(socket, "reel:600", { events: ["reel_update"] });
  await new Promise((resolve, reject) => {
    channel
      .leave(5000)
      .receive("ok", resolve)
      .receive("timeout", () => reject(new Error("no reply to phx_leave within 5 s")));
  });
  // A second client still on the topic shows when the publish has been fanned out.
  const other = await daemon.phoenix();
  const witness = await joinOk(other, "reel:600", { events: ["reel_update"] });
  await daemon.publish("reel:600", "reel_update", { views: 1 });
  assert.deepEqual(await witness.queues.reel_update.next(5000), { seq: 1, views: 1 });
  await sleep(200); // room for a wrongly sent frame to arrive
  const late = socket.frames.filter((m) => m.topic === "reel:600" && m.event === "reel_update");
  assert.equal(queues.reel_update.length, 0, "the left channel received an update");
  assert.equal(late.length, 0, "the socket received a reel:600 update after the leave");
});

test("the daemon exits 0 on SIGTERM", T, async () => {
  const exit = await daemon.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
});

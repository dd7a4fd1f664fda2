// Recovery on rejoin with the official client: a channel whose params are a function
// ({last_seq, epoch} from what it last received) gets, after any reconnect, the messages it
// missed, in order, before live ones, with no gap and no duplicate — across a dropped
// connection and across a kronopd crash (kill -9) and restart. A join that cannot recover
// is told {"recovered": false} with the reel's current state.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";

import {
  cPublishBin,
  eventually,
  join,
  kronopctlBin,
  openRaw,
  run,
  sleep,
  startDaemon,
} from "./helpers.mjs";

const T = { timeout: 60000 };
let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  if (daemon) await daemon.stop();
});

// The seqs the durable log holds of `topic` (kronopctl replay, the daemon running), read
// again until there are at least `count`: fan-out does not wait for the log.
async function loggedSeqs(topic, count) {
  let seqs = [];
  const dataDir = daemon.args[daemon.args.indexOf("--data-dir") + 1];
  await eventually(
    async () => {
      const replay = await run(kronopctlBin(), ["--data-dir", dataDir, "replay", "--topic", topic, "--json"], 30000);
      assert.equal(replay.code, 0, replay.stderr);
      const out = replay.stdout.trim();
      seqs = out === "" ? [] : out.split("\n").map((line) => Number(JSON.parse(line).seq));
      return seqs.length >= count;
    },
    30000,
    `the log to hold ${count} rows of ${topic}`,
    200,
  );
  return seqs;
}

// A channel as the README shows it: the params function is evaluated on every (re)join.
// Records every reply and every seq received.
function recoveringChannel(socket, topic) {
  const state = { last_seq: undefined, epoch: undefined, seqs: [], replies: [] };
  const channel = socket.channel(topic, () => ({ last_seq: state.last_seq, epoch: state.epoch }));
  channel.on("reel_update", (payload) => {
    state.seqs.push(payload.seq);
    state.last_seq = payload.seq;
  });
  const first = new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", (reply) => {
        state.replies.push(reply);
        state.epoch = reply.epoch;
        if (state.last_seq === undefined) state.last_seq = reply.last_seq;
        resolve(reply);
      })
      .receive("error", reject);
  });
  return { channel, state, first };
}

async function publishMany(topic, from, to) {
  for (let i = from; i <= to; i++) await daemon.publish(topic, "reel_update", { n: i });
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("a dropped connection: the rejoin recovers the missed messages before live ones", T, async () => {
  const socket = await daemon.phoenix();
  const topic = "reel:7001";
  const { state, first } = recoveringChannel(socket, topic);
  const reply = await first;
  assert.equal(reply.last_seq, 0);
  assert.equal(reply.recovered, undefined, "a first join without last_seq does not recover");
  await publishMany(topic, 1, 3);
  await eventually(() => state.seqs.length === 3, 5000, "seq 1..3 live");

  socket.disconnect();
  await publishMany(topic, 4, 8); // while away
  socket.connect();
  await eventually(() => state.replies.length === 2, 10000, "the rejoin's reply");
  await publishMany(topic, 9, 9);
  await eventually(() => state.seqs.length >= 9, 10000, "seq 4..9");
  await sleep(100); // room for a duplicate to show
  assert.deepEqual(state.seqs, range(1, 9), "no gap, no duplicate, in order");
  assert.deepEqual(state.replies[1], { epoch: reply.epoch, last_seq: 8, recovered: true });
});

test("kill -9 of kronopd and a restart: phoenix reconnects and recovers gap-free", T, async () => {
  const socket = await daemon.phoenix();
  const topic = "reel:7002";
  const { state, first } = recoveringChannel(socket, topic);
  const reply = await first;
  await publishMany(topic, 1, 5);
  await eventually(() => state.seqs.length === 5, 5000, "seq 1..5 live");
  // The epoch survives a kill -9 once the log holds the topic: a kill before its first
  // commit starts the topic's stream again (its records are numbered again from the rings).
  await loggedSeqs(topic, 5);

  await daemon.restart({ signal: "SIGKILL" });
  // Published while the client is still reconnecting (its backoff is 10 ms to 2 s).
  await publishMany(topic, 6, 10);
  await eventually(() => state.replies.length >= 2, 15000, "the rejoin after the restart");
  await publishMany(topic, 11, 12);
  await eventually(() => state.seqs.length >= 12, 10000, "seq 6..12");
  await sleep(100);
  assert.deepEqual(state.seqs, range(1, 12), "no gap, no duplicate, in order");
  const rejoin = state.replies.at(-1);
  assert.equal(rejoin.epoch, reply.epoch, "the stream's epoch survives the restart");
  assert.equal(rejoin.recovered, true);
});

test("a stream of another epoch, or a last_seq ahead of it, is not recovered", T, async () => {
  const topic = "reel:7003";
  await publishMany(topic, 1, 4);
  const socket = await daemon.phoenix();
  const fresh = await join(socket, topic, { params: {} });
  assert.equal(fresh.status, "ok");
  assert.equal(fresh.response.last_seq, 4);
  fresh.channel.leave();

  const other = await join(socket, topic, {
    params: { last_seq: 2, epoch: fresh.response.epoch + 1 },
    events: ["reel_update"],
  });
  assert.equal(other.status, "ok");
  assert.equal(other.response.recovered, false);
  assert.equal(other.response.last_seq, 4);
  assert.deepEqual(other.response.state, { likes: 0, comments: 0, shares: 0 }, "current state");
  await sleep(200);
  assert.equal(other.queues.reel_update.length, 0, "nothing replayed");
  other.channel.leave();

  // Ahead of the stream: kronopd waits (5 s) for the stream to get there, as it does right
  // after a crash while the records it had fanned out are numbered again; then gives up.
  const t0 = Date.now();
  const ahead = await join(socket, topic, {
    params: { last_seq: 99, epoch: fresh.response.epoch },
    ms: 10000,
  });
  assert.equal(ahead.response.recovered, false);
  assert.ok(Date.now() - t0 >= 4500, `answered after ${Date.now() - t0} ms`);
  ahead.channel.leave();
  // ... and when the stream gets there meanwhile, the join recovers (nothing to send).
  const caughtUp = join(socket, topic, {
    params: { last_seq: 6, epoch: fresh.response.epoch },
    events: ["reel_update"],
    ms: 10000,
  });
  await sleep(300);
  await publishMany(topic, 5, 7);
  const up = await caughtUp;
  assert.equal(up.response.recovered, true);
  assert.equal((await up.queues.reel_update.next(5000)).seq, 7, "live after the 6 it had");
  up.channel.leave();

  // last_seq 0: nothing received yet, whatever the epoch: everything from seq 1.
  const zero = await join(socket, topic, {
    params: { last_seq: 0, epoch: 12345 },
    events: ["reel_update"],
  });
  assert.equal(zero.response.recovered, true);
  for (const seq of range(1, 7)) {
    assert.equal((await zero.queues.reel_update.next(5000)).seq, seq);
  }
  zero.channel.leave();
});

test("malformed recovery parameters get an error reply", T, async () => {
  const socket = await daemon.phoenix();
  for (const [params, reason] of [
    [{ last_seq: "3" }, "last_seq must be a non-negative integer"],
    [{ last_seq: -1 }, "last_seq must be a non-negative integer"],
    [{ last_seq: 1.5 }, "last_seq must be a non-negative integer"],
    [{ last_seq: 1, epoch: "x" }, "epoch must be a non-negative integer"],
  ]) {
    const r = await join(socket, "reel:7004", { params });
    assert.equal(r.status, "error", JSON.stringify(params));
    assert.deepEqual(r.response, { reason });
    r.channel.leave();
  }
  // null is "not given".
  const ok = await join(socket, "reel:7004", { params: { last_seq: null, epoch: null } });
  assert.equal(ok.status, "ok");
  assert.equal(ok.response.recovered, undefined);
});

test("history older than retention, or more than --max-recovery-messages, is not recovered", T, async () => {
  const d = await startDaemon({
    extraArgs: ["--retention-count", "5", "--max-recovery-messages", "100"],
  });
  try {
    const socket = await d.phoenix();
    const publish = (topic, count) =>
      run(kronopctlBin(), [
        "--shm-name", d.shmName, "publish", "--topic", topic, "--event", "reel_update",
        "--json", '{"n":1}', "--count", String(count),
      ]);
    assert.equal((await publish("reel:1", 20)).code, 0);
    const fresh = await join(socket, "reel:1", { params: {} });
    assert.equal(fresh.response.last_seq, 20);
    fresh.channel.leave();
    // Retention keeps the newest 5 (seq 16..20) once its next round has run (every second).
    const epoch = fresh.response.epoch;
    let r;
    await eventually(
      async () => {
        r = await join(socket, "reel:1", { params: { last_seq: 10, epoch } });
        r.channel.leave();
        return r.response.recovered === false;
      },
      10000,
      "seq 11..15 trimmed by retention",
      500,
    );
    // What is still retained is recovered.
    const kept = await join(socket, "reel:1", { params: { last_seq: 16, epoch }, events: ["reel_update"] });
    assert.equal(kept.response.recovered, true);
    for (const seq of range(17, 20)) assert.equal((await kept.queues.reel_update.next(5000)).seq, seq);
    kept.channel.leave();

    assert.equal((await publish("reel:2", 150)).code, 0);
    const many = await join(socket, "reel:2", { params: { last_seq: 0 }, events: ["reel_update"] });
    assert.equal(many.response.recovered, false, "150 missed > --max-recovery-messages 100");
    assert.equal(many.response.last_seq, 150);

    const stats = await d.clientStats();
    assert.ok(Number(stats.recoveries) >= 1, JSON.stringify(stats));
    assert.ok(Number(stats.recoveries_failed) >= 2, JSON.stringify(stats));
    assert.ok(Number(stats.recovered_messages) >= 4, JSON.stringify(stats));
  } finally {
    await d.stop();
  }
});

test("kill -9 during a sustained publish: the log has every update once, every client a gap-free stream", T, async () => {
  const topic = "reel:7100";
  const total = 12000;
  const sockets = await Promise.all([daemon.phoenix(), daemon.phoenix(), daemon.phoenix()]);
  const clients = sockets.map((s) => recoveringChannel(s, topic));
  await Promise.all(clients.map((c) => c.first));
  // One producer, 4,000 updates a second, for 3 s; kronopd is killed and restarted in the
  // middle. The producer's ring keeps what it publishes while no daemon reads it.
  const publisher = run(
    kronopctlBin(),
    [
      "--shm-name", daemon.shmName, "publish", "--topic", topic, "--event", "reel_update",
      "--json", '{"pad":"' + "x".repeat(150) + '"}', "--count", String(total), "--rate", "4000",
      "--wait-ms", "10000",
    ],
    30000,
  );
  await eventually(() => clients.every((c) => c.state.seqs.length > 2000), 10000, "a third published");
  await daemon.restart({ signal: "SIGKILL" });
  const published = await publisher;
  assert.equal(published.code, 0, published.stderr);
  for (const [i, c] of clients.entries()) {
    await eventually(() => c.state.seqs.length >= total, 20000, `client ${i} to have ${total}`);
  }
  await sleep(200);
  for (const [i, c] of clients.entries()) {
    assert.equal(c.state.seqs.length, total, `client ${i}: no duplicate`);
    c.state.seqs.forEach((seq, k) => {
      if (seq !== k + 1) assert.fail(`client ${i}: message ${k} has seq ${seq}, not ${k + 1}`);
    });
    assert.ok(c.state.replies.length >= 2, `client ${i} rejoined`);
    assert.equal(c.state.replies.at(-1).recovered, true, `client ${i} recovered`);
  }
  // The log, read with the daemon running: every update exactly once, numbered 1..total.
  // Fan-out does not wait for the log: read again until it has committed them all (or more,
  // which would be a duplicate and fail below).
  const seqs = await loggedSeqs(topic, total);
  assert.equal(seqs.length, total);
  seqs.forEach((seq, k) => {
    if (seq !== k + 1) assert.fail(`log row ${k} has seq ${seq}`);
  });
});

test("a recovery larger than --max-unsent-bytes goes out as the socket drains, not closed", T, async () => {
  const d = await startDaemon({ extraArgs: ["--max-unsent-bytes", "65536"] });
  try {
    const count = 3000; // about 700 kB of frames, ten times the bound
    const r = await run(kronopctlBin(), [
      "--shm-name", d.shmName, "publish", "--topic", "reel:9", "--event", "reel_update",
      "--json", '{"pad":"' + "y".repeat(200) + '"}', "--count", String(count),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const socket = await d.phoenix();
    const seqs = [];
    const channel = socket.channel("reel:9", { last_seq: 0 });
    channel.on("reel_update", (p) => seqs.push(p.seq));
    const reply = await new Promise((resolve, reject) =>
      channel.join().receive("ok", resolve).receive("error", reject),
    );
    assert.equal(reply.recovered, true);
    await eventually(() => seqs.length >= count, 10000, `${count} recovered messages`).catch((e) => {
      throw new Error(`${e.message}: got ${seqs.length}, last ${seqs.at(-1)}, closes ${socket.closes.length}`);
    });
    assert.deepEqual(seqs, range(1, count));
    assert.equal(socket.closes.length, 0, "the socket stayed open");
    assert.equal((await d.clientStats()).closed_slow, 0);
  } finally {
    await d.stop();
  }
});

test("after kill -9, a topic whose waiting records come from two producers gets a new epoch", T, async () => {
  // Records that a killed kronopd read but did not log are numbered again at the next start;
  // one producer's come in the same order (same seqs), two producers' may interleave
  // otherwise, so such a topic's stream is declared new. A clean stop renews nothing.
  const epochOf = async (topic) => {
    const socket = await daemon.phoenix();
    const r = await join(socket, topic, { params: {} });
    r.channel.leave();
    return r.response;
  };
  const one = "reel:7201";
  const two = "reel:7202";
  await publishMany(one, 1, 1);
  await daemon.publish(two, "reel_update", { n: 1 });
  const before = { one: await epochOf(one), two: await epochOf(two) };

  await daemon.restart({ signal: "SIGTERM" });
  await daemon.publish(two, "reel_update", { n: 2 });
  assert.equal((await epochOf(two)).epoch, before.two.epoch, "a clean stop keeps the epoch");

  await daemon.restart({ signal: "SIGKILL" });
  assert.equal((await epochOf(two)).epoch, before.two.epoch, "nothing waiting: same epoch");
  daemon.proc.kill("SIGKILL");
  await daemon.exited;
  // While no daemon runs: one producer (one process) on `one`, two on `two`.
  const r = await run(kronopctlBin(), [
    "--shm-name", daemon.shmName, "publish", "--topic", one, "--event", "reel_update",
    "--json", '{"n":2}', "--count", "2",
  ]);
  assert.equal(r.code, 0, r.stderr);
  await daemon.publish(two, "reel_update", { n: 3 });
  await daemon.publish(two, "reel_update", { n: 4 });
  await daemon.restart();
  const after = { one: await epochOf(one), two: await epochOf(two) };
  assert.equal(after.one.epoch, before.one.epoch, "one producer: the same stream");
  assert.equal(after.one.last_seq, 3);
  assert.notEqual(after.two.epoch, before.two.epoch, "two producers: a new epoch");
  assert.equal(after.two.last_seq, 4, "numbering continues");

  const socket = await daemon.phoenix();
  const stale = await join(socket, two, { params: { last_seq: 2, epoch: before.two.epoch } });
  assert.equal(stale.response.recovered, false);
  stale.channel.leave();
  const fine = await join(socket, one, {
    params: { last_seq: 1, epoch: before.one.epoch },
    events: ["reel_update"],
  });
  assert.equal(fine.response.recovered, true);
  assert.equal((await fine.queues.reel_update.next(5000)).seq, 2);
  assert.equal((await fine.queues.reel_update.next(5000)).seq, 3);
  fine.channel.leave();
});

test("--no-durable-log: no database, and a join that missed messages cannot recover", T, async () => {
  const d = await startDaemon({ extraArgs: ["--no-durable-log"] });
  try {
    const dataDir = d.args[d.args.indexOf("--data-dir") + 1];
    await d.publish("reel:1", "reel_update", { n: 1 });
    await d.publish("reel:1", "reel_update", { n: 2 });
    const socket = await d.phoenix();
    const r = await join(socket, "reel:1", { params: { last_seq: 1 } });
    assert.equal(r.response.recovered, false);
    assert.equal(r.response.last_seq, 2);
    assert.equal(existsSync(path.join(dataDir, "kronop.db")), false, "no database file");
    const stats = JSON.parse(
      (await run(kronopctlBin(), ["--socket", d.controlSocket, "--json", "stats"])).stdout,
    );
    assert.equal(stats.log, undefined, "no log section in stats");
  } finally {
    await d.stop();
  }
});

// A rejoin that arrives while the log has not yet committed the batch holding its topic's
// last message waits for that commit (with a 10 s deadline), then reads the history under a
// new wait. The first wait's entry used to outlive it: when its deadline passed after the
// socket had closed, kronopd read the freed connection (a segfault under load, found by
// bench/soak). Many such rejoins under a steady stream, each socket closed at its reply,
// then past the deadline: kronopd must still be serving.
test("rejoins that waited for a commit, their sockets closed: kronopd outlives the deadline", { timeout: 90000 }, async () => {
  const topic = "reel:7300";
  await daemon.publish(topic, "reel_update", { n: 0 });
  const stream = run(cPublishBin(), [daemon.shmName, "count", topic, "reel_update", "12000", "2000"], 30000);
  const url = `${daemon.url}/ws/websocket?vsn=2.0.0`;
  const replyTo = async (client, ref) => {
    for (;;) {
      const m = JSON.parse((await client.messages.next(10000, `the reply to ${ref}`)).text);
      if (m[1] === ref && m[3] === "phx_reply") return m[4];
    }
  };
  let recovered = 0;
  const started = Date.now();
  while (Date.now() - started < 5000) {
    const first = await daemon.raw("/ws/websocket?vsn=2.0.0");
    first.ws.send(JSON.stringify(["1", "1", topic, "phx_join", {}]));
    const now = await replyTo(first, "1");
    first.ws.terminate();
    const again = await openRaw(url).opened;
    const lastSeq = Math.max(0, now.response.last_seq - 5);
    again.ws.send(JSON.stringify(["1", "1", topic, "phx_join", { last_seq: lastSeq }]));
    const r = await replyTo(again, "1");
    if (r.response.recovered === true) recovered += 1;
    again.ws.terminate();
  }
  assert.ok(recovered > 0, "some rejoins recovered");
  await sleep(11000); // past the 10 s commit deadline of every wait
  daemon.assertAlive();
  const socket = await daemon.phoenix();
  const r = await join(socket, topic);
  assert.equal(r.status, "ok");
  assert.equal((await stream).code, 0);
});

// SIGTERM is a drain: kronopd stops accepting at once, tells every client (a system_notice
// on each topic a Phoenix socket joined, the plain frame on a plain socket), closes the
// clients with 1012 "service restart" in batches spread over half of --drain-ms, flushes the
// log and exits 0 within --drain-ms, even when a client does not take its close frame. A
// restart under a sustained publish loses nothing: the official phoenix clients reconnect
// on their own and recover every update once, in order, through last_seq/epoch.
import assert from "node:assert/strict";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { test } from "node:test";

import {
  connectTcp,
  cPublishBin,
  eventually,
  joinOk,
  kronopctlBin,
  openRaw,
  run,
  sleep,
  startDaemon,
  withTimeout,
} from "./helpers.mjs";

// A raw `ws` socket whose frames and close are timed (performance.now()).
async function timedRaw(daemon, urlPath) {
  const client = await openRaw(`${daemon.url}${urlPath}`).opened;
  daemon.track(client);
  client.frames = [];
  client.ws.on("message", (data, isBinary) => {
    if (!isBinary) client.frames.push({ at: performance.now(), msg: JSON.parse(data.toString()) });
  });
  client.ws.on("close", (code, reason) => {
    client.closedAt = performance.now();
    client.close_ = { code, reason: reason.toString("utf8") };
  });
  return client;
}

// A Phoenix V2 socket (raw `ws`) joined to `topic` with join_ref `ref`.
async function joinedRaw(daemon, topic, ref) {
  const client = await timedRaw(daemon, "/ws/websocket?vsn=2.0.0");
  client.ws.send(JSON.stringify([ref, ref, topic, "phx_join", {}]));
  await eventually(
    () => client.frames.some((f) => f.msg[3] === "phx_reply" && f.msg[1] === ref),
    10000,
    `the reply to join ${ref}`,
  );
  const reply = client.frames.find((f) => f.msg[3] === "phx_reply").msg;
  assert.equal(reply[4].status, "ok", JSON.stringify(reply));
  return client;
}

// A WebSocket client that completes its handshake and then takes part in nothing: it does
// not answer the close frame, and does not close its side when the server closes its own
// (allowHalfOpen), so only the drain's deadline ends the connection.
async function deafSocket(daemon) {
  const sock = net.connect({ port: daemon.port, host: "127.0.0.1", allowHalfOpen: true });
  sock.on("error", () => {});
  let received = "";
  const upgraded = new Promise((resolve) =>
    sock.on("data", (b) => {
      received += b.toString("latin1");
      if (received.includes("\r\n\r\n")) resolve(received.split("\r\n")[0]);
    }),
  );
  sock.write(
    "GET /ws/reel/8001 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      "Sec-WebSocket-Version: 13\r\n\r\n",
  );
  const status = await withTimeout(upgraded, 5000, "the deaf socket's upgrade");
  assert.match(status, / 101 /);
  return sock;
}

const isNotice = (payload) =>
  typeof payload.id === "string" &&
  payload.id.length > 0 &&
  payload.level === "warning" &&
  payload.message === "service restart" &&
  typeof payload.timestamp === "number" &&
  payload.timestamp > 0;

test("SIGTERM: a system_notice, close 1012 in batches, nothing accepted, exit 0 within --drain-ms", { timeout: 60000 }, async (t) => {
  const drainMs = 4000;
  const d = await startDaemon({ extraArgs: ["--drain-ms", String(drainMs), "--io-threads", "2"] });
  let deaf;
  try {
    const topic = "reel:8001";
    const raws = [];
    for (let i = 1; i <= 8; i++) raws.push(await joinedRaw(d, topic, String(i)));
    const plain = await timedRaw(d, "/ws/reel/8001");
    const socket = await d.phoenix();
    const official = await joinOk(socket, topic, { events: ["system_notice"] });
    deaf = await deafSocket(d);
    // Live messages reach everyone before the drain.
    await d.publish(topic, "reel_update", { n: 1 });
    await eventually(
      () => [...raws, plain].every((c) => c.frames.some((f) => f.msg.payload?.n === 1 || f.msg[4]?.n === 1)),
      10000,
      "the update before the drain",
    );

    let exitAt = null;
    const exited = d.exited.then((e) => {
      exitAt = performance.now();
      return e;
    });
    const t0 = performance.now();
    d.proc.kill("SIGTERM");

    // The notice, on the joined topic with the join's join_ref.
    const notice = (c) => c.frames.find((f) => f.msg[3] === "system_notice");
    await eventually(() => raws.every(notice), 10000, "every Phoenix socket's system_notice");
    const firstNoticeAt = Math.min(...raws.map((c) => notice(c).at));
    // Accepting stopped at once: a new connection is refused while the clients are still
    // being closed.
    await assert.rejects(connectTcp(d.port, 2000), /ECONNREFUSED/, "a new connection is refused");
    assert.ok(
      raws.some((c) => c.closedAt === undefined),
      "connections refused before the drain closed every client",
    );
    for (const [i, c] of raws.entries()) {
      const [joinRef, ref, noticeTopic, , payload] = notice(c).msg;
      assert.equal(joinRef, String(i + 1));
      assert.equal(ref, null);
      assert.equal(noticeTopic, topic);
      assert.ok(isNotice(payload), JSON.stringify(payload));
    }
    const officialNotice = await official.queues.system_notice.next(10000);
    assert.ok(isNotice(officialNotice), JSON.stringify(officialNotice));
    await eventually(() => plain.frames.some((f) => f.msg.event === "system_notice"), 10000, "the plain notice");
    const plainNotice = plain.frames.find((f) => f.msg.event === "system_notice").msg;
    assert.equal(plainNotice.topic, topic);
    assert.ok(isNotice(plainNotice.payload), JSON.stringify(plainNotice));

    // Then each is closed with 1012, after its notice, in more than one batch.
    const all = [...raws, plain];
    await eventually(() => all.every((c) => c.closedAt !== undefined), drainMs + 5000, "every close");
    for (const c of all) {
      assert.deepEqual(c.close_, { code: 1012, reason: "service restart" });
      const n = c.frames.find((f) => f.msg[3] === "system_notice" || f.msg.event === "system_notice");
      assert.ok(n.at <= c.closedAt, "the notice came before the close");
    }
    const officialClose = await socket.closes.next(drainMs + 5000);
    assert.equal(officialClose.code, 1012);
    const closes = all.map((c) => c.closedAt - t0).sort((a, b) => a - b);
    let batches = 1;
    for (let i = 1; i < closes.length; i++) if (closes[i] - closes[i - 1] > 150) batches += 1;
    const spread = closes.at(-1) - closes[0];
    assert.ok(batches >= 3, `closes in ${batches} batch(es): ${closes.map(Math.round)}`);
    assert.ok(spread >= drainMs / 4, `closes spread over ${Math.round(spread)} ms`);

    const exit = await withTimeout(exited, drainMs + 10000, "kronopd to exit");
    const took = exitAt - t0;
    t.diagnostic(
      `notice after ${Math.round(firstNoticeAt - t0)} ms; closes at ${closes.map(Math.round).join(", ")} ms ` +
        `(${batches} batches); exit after ${Math.round(took)} ms (--drain-ms ${drainMs})`,
    );
    assert.deepEqual(exit, { code: 0, signal: null }, d.tail());
    assert.ok(took < drainMs, `exited after ${Math.round(took)} ms, --drain-ms ${drainMs}`);
    assert.match(d.output, /event=draining signal=SIGTERM connections=\d+ drain_ms=4000/);
    assert.match(d.output, /event=stopped drained_ms=\d+/);
  } finally {
    deaf?.destroy();
    await d.stop();
  }
});

test("--drain-ms 0: notice and close at once, exit 0", { timeout: 30000 }, async () => {
  const d = await startDaemon({ extraArgs: ["--drain-ms", "0"] });
  try {
    const c = await joinedRaw(d, "reel:8002", "1");
    d.proc.kill("SIGTERM");
    const exit = await withTimeout(d.exited, 10000, "kronopd to exit");
    assert.deepEqual(exit, { code: 0, signal: null }, d.tail());
    await eventually(() => c.closedAt !== undefined, 5000, "the close");
    assert.ok(c.frames.some((f) => f.msg[3] === "system_notice"), "the notice");
    assert.equal(c.close_.code, 1012);
  } finally {
    await d.stop();
  }
});

// A phoenix channel that recovers (see recovery.test.mjs) and records every payload's
// counter, seq, the replies and the notices it got.
function recoveringChannel(socket, topic) {
  const state = { last_seq: undefined, epoch: undefined, ns: [], seqs: [], replies: [], notices: [] };
  const channel = socket.channel(topic, () => ({ last_seq: state.last_seq, epoch: state.epoch }));
  channel.on("reel_update", (payload) => {
    state.ns.push(payload.n);
    state.seqs.push(payload.seq);
    state.last_seq = payload.seq;
  });
  channel.on("system_notice", (payload) => state.notices.push(payload));
  const first = new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", (reply) => {
        state.replies.push(reply);
        if (reply.recovered === false) state.last_seq = reply.last_seq;
        state.epoch = reply.epoch;
        if (state.last_seq === undefined) state.last_seq = reply.last_seq;
        resolve(reply);
      })
      .receive("error", reject);
  });
  return { topic, channel, state, first };
}

function assertCounted(values, total, what) {
  assert.equal(values.length, total, `${what}: ${values.length} values, not ${total}`);
  values.forEach((v, k) => {
    if (v !== k + 1) assert.fail(`${what}: value ${k} is ${v}, not ${k + 1}`);
  });
}

test("SIGTERM restart under a sustained publish: phoenix clients reconnect and recover every update once, in order", { timeout: 180000 }, async (t) => {
  // A drain budget that lets a slow build's log (TSan: about 5,000 rows a second, less on a
  // loaded machine) commit what it fanned out: a log cut at its budget leaves the rest to
  // the next start, as a crash does, and a topic whose first rows it never committed starts
  // a new stream, which clients cannot recover.
  const drainMs = 6000;
  const d = await startDaemon({ extraArgs: ["--drain-ms", String(drainMs)] });
  try {
    const topics = ["reel:8101", "reel:8102"];
    const total = 10000;
    const rate = 1000; // a second, per producer: 10 s of publishing, within the log's pace
    const sockets = await Promise.all([d.phoenix(), d.phoenix(), d.phoenix()]);
    const clients = sockets.flatMap((s) => topics.map((topic) => recoveringChannel(s, topic)));
    const firstReplies = await Promise.all(clients.map((c) => c.first));
    // One producer process per topic, {"n": 1..total}; the rings (shared memory) keep what
    // they publish while no daemon reads them.
    const producers = topics.map((topic) =>
      run(cPublishBin(), [d.shmName, "count", topic, "reel_update", String(total), String(rate)], 150000),
    );
    await eventually(
      () => clients.every((c) => c.state.ns.length >= total / 5),
      60000,
      "a fifth of the updates live",
    );
    const oldExit = d.exited;
    const t0 = performance.now();
    await d.restart({ signal: "SIGTERM", readyMs: 30000, exitMs: drainMs + 5000 });
    const restartMs = performance.now() - t0;
    assert.deepEqual(await oldExit, { code: 0, signal: null }, "the drained daemon exited 0");
    const atRestart = clients.map((c) => c.state.ns.length);
    for (const [i, p] of producers.entries()) {
      const r = await p;
      assert.equal(r.code, 0, `producer of ${topics[i]}: ${r.stderr}`);
    }
    for (const [i, c] of clients.entries()) {
      await eventually(
        () => c.state.ns.length >= total,
        60000,
        `client ${i} (${c.topic}) to have ${total} updates (has ${c.state.ns.length})`,
      );
    }
    await sleep(300); // room for a duplicate to show
    for (const [i, c] of clients.entries()) {
      const what = `client ${i} on ${c.topic}`;
      assertCounted(c.state.ns, total, `${what}, payload counter`);
      assertCounted(c.state.seqs, total, `${what}, seq`);
      assert.ok(c.state.replies.length >= 2, `${what} rejoined on its own`);
      const rejoin = c.state.replies.at(-1);
      assert.equal(rejoin.recovered, true, `${what}: ${JSON.stringify(rejoin)}`);
      assert.equal(rejoin.epoch, firstReplies[i].epoch, `${what}: the same stream`);
      assert.equal(c.state.notices.length, 1, `${what} was told of the restart`);
      assert.equal(c.state.notices[0].message, "service restart");
    }
    for (const [i, s] of sockets.entries()) {
      const codes = [];
      while (s.closes.length > 0) codes.push((await s.closes.next()).code);
      assert.ok(codes.includes(1012), `socket ${i} was closed with 1012: ${codes}`);
    }
    // The new daemon read none of the records the old one had logged: their ring positions
    // were released once committed.
    const stats = JSON.parse((await run(kronopctlBin(), ["--socket", d.controlSocket, "--json", "stats"])).stdout);
    assert.equal(Number(stats.already_logged ?? 0), 0, `already_logged: ${stats.already_logged}`);
    // The log: every update once, numbered 1..total.
    const dataDir = d.args[d.args.indexOf("--data-dir") + 1];
    for (const topic of topics) {
      let seqs = [];
      await eventually(
        async () => {
          const r = await run(kronopctlBin(), ["--data-dir", dataDir, "replay", "--topic", topic, "--json"], 30000);
          assert.equal(r.code, 0, r.stderr);
          seqs = r.stdout.trim().split("\n").map((line) => Number(JSON.parse(line).seq));
          return seqs.length >= total;
        },
        30000,
        `the log to hold ${total} rows of ${topic}`,
        200,
      );
      assertCounted(seqs, total, `the log of ${topic}`);
    }
    const stopped = d.output.match(/event=stopped drained_ms=\d+ log=\w+/);
    t.diagnostic(
      `${stopped?.[0]}; restart (drain, exit, start) took ${Math.round(restartMs)} ms; updates received by then: ` +
        `${Math.min(...atRestart)}..${Math.max(...atRestart)} of ${total}`,
    );
  } finally {
    await d.stop();
  }
});

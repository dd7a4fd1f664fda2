// Slow consumers: a client that stops reading has its unsent bytes bounded
// (--max-unsent-bytes). Low-priority messages to it are dropped (counted); anything else
// closes it with 1013. Other subscribers of the same topic get every message.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { joinOk, kronopctlBin, run, startDaemon } from "./helpers.mjs";

const T = { timeout: 60000 };
const BOUND = 262144;
let daemon;

before(async () => {
  daemon = await startDaemon({ extraArgs: ["--max-unsent-bytes", String(BOUND)] });
});

after(async () => {
  if (daemon) await daemon.stop();
});

async function clientStats() {
  const c = await daemon.clientStats();
  return { droppedLow: Number(c.dropped_low), closedSlow: Number(c.closed_slow) };
}

// `count` copies of a ~4 KB update, with kronopctl's --count (one producer handle), at
// 4,000 a second: a steady stream that a reading client keeps up with.
async function publishMany(topic, count, priority) {
  const json = JSON.stringify({ pad: "x".repeat(4000) });
  const r = await run(
    kronopctlBin(),
    [
      "--shm-name", daemon.shmName,
      "publish", "--topic", topic, "--event", "reel_update", "--json", json,
      "--count", String(count), "--priority", priority, "--rate", "4000",
    ],
    30000,
  );
  assert.equal(r.code, 0, r.stderr);
}

// A plain subscriber that reads nothing after the handshake.
async function stalledSubscriber(topic) {
  const client = await daemon.raw(`/ws/reel/${topic.slice("reel:".length)}`);
  client.ws._socket.pause();
  return client;
}

test("a client that stops reading is closed with 1013; the others get every message", T, async () => {
  const witness = await daemon.phoenix();
  const { queues } = await joinOk(witness, "reel:slow1", { events: ["reel_update"] });
  const stalled = await stalledSubscriber("reel:slow1");
  const before = await clientStats();

  const N = 4000; // ~16 MB: more than the kernel buffers of a stalled loopback socket
  await publishMany("reel:slow1", N, "normal");
  for (let i = 1; i <= N; i++) {
    const p = await queues.reel_update.next(10000, `update #${i} at the witness`);
    assert.equal(p.seq, i);
  }
  const afterStats = await clientStats();
  assert.equal(afterStats.closedSlow - before.closedSlow, 1, "one connection closed as slow");
  assert.equal(afterStats.droppedLow, before.droppedLow, "normal messages are never dropped");

  // Reading again, the stalled client gets what was in flight, then the close frame.
  stalled.ws._socket.resume();
  const { code } = await stalled.waitClose(10000);
  assert.equal(code, 1013);
});

test("low-priority messages to a stalled client are dropped, not the client", T, async () => {
  const witness = await daemon.phoenix();
  const { queues } = await joinOk(witness, "reel:slow2", { events: ["reel_update"] });
  const stalled = await stalledSubscriber("reel:slow2");
  const before = await clientStats();

  const N = 4000;
  await publishMany("reel:slow2", N, "low");
  for (let i = 1; i <= N; i++) {
    const p = await queues.reel_update.next(10000, `low update #${i} at the witness`);
    assert.equal(p.seq, i);
  }
  let s = await clientStats();
  assert.ok(s.droppedLow - before.droppedLow > 0, "some low-priority messages were dropped");
  assert.equal(s.closedSlow, before.closedSlow, "the stalled client is still connected");
  assert.equal(stalled.ws.readyState, stalled.ws.OPEN);

  // A normal message that does not fit closes it.
  await publishMany("reel:slow2", 1, "normal");
  await queues.reel_update.next(10000, "the normal update at the witness");
  s = await clientStats();
  assert.equal(s.closedSlow - before.closedSlow, 1);
  stalled.ws._socket.resume();
  const { code } = await stalled.waitClose(10000);
  assert.equal(code, 1013);
});

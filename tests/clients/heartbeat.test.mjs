// Heartbeats keep a phoenix socket open; a socket that sends nothing is closed after
// --idle-timeout-ms.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { joinOk, sleep, startDaemon } from "./helpers.mjs";

const IDLE_TIMEOUT_MS = 1000;
const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon({ extraArgs: ["--idle-timeout-ms", String(IDLE_TIMEOUT_MS)] });
});

after(async () => {
  if (daemon) await daemon.stop();
});

test("a phoenix client with heartbeatIntervalMs 500 stays connected across 2 s", T, async () => {
  const socket = await daemon.phoenix({ heartbeatIntervalMs: 500 });
  const { queues } = await joinOk(socket, "reel:1", { events: ["reel_update"] });

  await sleep(2000);

  // Each heartbeat got its reply (the client closes with "heartbeat timeout" otherwise) and
  // the server did not close the socket as idle.
  const replies = socket.frames.filter(
    (m) => m.topic === "phoenix" && m.event === "phx_reply" && m.payload?.status === "ok",
  );
  assert.ok(replies.length >= 2, `heartbeat replies in 2 s: ${replies.length} (want >= 2)`);
  assert.equal(socket.closes.length, 0, "the socket was closed during the wait");
  assert.ok(socket.isConnected(), "the socket is connected after the wait");

  // Same connection, same channel: still subscribed.
  await daemon.publish("reel:1", "reel_update", { views: 1 });
  assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 1 });
  assert.equal(socket.closes.length, 0, "the socket was closed");
});

test("a raw socket that sends nothing is closed after --idle-timeout-ms", T, async () => {
  const started = Date.now();
  const client = await daemon.raw("/ws/websocket?vsn=2.0.0");
  const { code } = await client.waitClose(IDLE_TIMEOUT_MS + 2000);
  const elapsed = Date.now() - started;
  assert.ok([1000, 1001].includes(code), `close code ${code}, want 1000 or 1001`);
  // Not before the timeout (some slack: the server's clock starts at the upgrade).
  assert.ok(elapsed >= IDLE_TIMEOUT_MS - 200, `closed after ${elapsed} ms, before the timeout`);
});

test("a raw socket that sends heartbeats stays open", T, async () => {
  const client = await daemon.raw("/ws/websocket?vsn=2.0.0");
  for (let ref = 1; ref <= 5; ref++) {
    client.ws.send(JSON.stringify([null, String(ref), "phoenix", "heartbeat", {}]));
    const msg = await client.messages.next(2000, `the reply to heartbeat ${ref}`);
    assert.deepEqual(JSON.parse(msg.text), [
      null,
      String(ref),
      "phoenix",
      "phx_reply",
      { status: "ok", response: {} },
    ]);
    await sleep(400);
  }
  // 2 s and more have passed; it must still be open.
  assert.equal(client.ws.readyState, client.ws.OPEN, "the socket was closed");
});

test("the daemon exits 0 on SIGTERM", T, async () => {
  const exit = await daemon.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
});

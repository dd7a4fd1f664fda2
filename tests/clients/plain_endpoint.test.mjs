// The plain endpoints: a raw WebSocket to /ws/reel/:id is already subscribed to reel:<id>
// and receives {"topic", "event", "payload"} JSON text messages, no Phoenix framing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { joinOk, sleep, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  if (daemon) await daemon.stop();
});

function parseText(msg) {
  assert.equal(msg.isBinary, false, "a text message");
  return JSON.parse(msg.text);
}

test("/ws/reel/123 receives each publish as {topic, event, payload} with seq", T, async () => {
  const client = await daemon.raw("/ws/reel/123");
  await sleep(100); // the subscription exists once the upgrade is done; be generous anyway

  await daemon.publish("reel:123", "reel_update", { views: 5 });
  const first = await client.messages.next(5000, "the first update on /ws/reel/123");
  assert.deepEqual(parseText(first), {
    topic: "reel:123",
    event: "reel_update",
    payload: { seq: 1, views: 5 },
  });
  assert.equal(Object.keys(parseText(first).payload)[0], "seq", "seq is the first key");

  await daemon.publish("reel:123", "reel_update", { views: 6 });
  await daemon.publish("reel:123", "interaction", { kind: "share" });
  assert.deepEqual(parseText(await client.messages.next(5000)), {
    topic: "reel:123",
    event: "reel_update",
    payload: { seq: 2, views: 6 },
  });
  assert.deepEqual(parseText(await client.messages.next(5000)), {
    topic: "reel:123",
    event: "interaction",
    payload: { seq: 3, reel_id: 123, kind: "share", share_count: 1 },
  });
});

test("a plain client and a phoenix client receive the same update", T, async () => {
  const plain = await daemon.raw("/ws/reel/777");
  const socket = await daemon.phoenix();
  const { queues } = await joinOk(socket, "reel:777", { events: ["reel_update"] });
  await sleep(100);

  await daemon.publish("reel:777", "reel_update", { views: 10, likes: 2 });
  const viaPhoenix = await queues.reel_update.next(5000, "the update via phoenix");
  const viaPlain = parseText(await plain.messages.next(5000, "the update via /ws/reel/777"));
  assert.deepEqual(viaPhoenix, { seq: 1, views: 10, likes: 2 });
  assert.deepEqual(viaPlain, { topic: "reel:777", event: "reel_update", payload: viaPhoenix });
});

test("/ws/reel/456 does not receive reel:123's updates", T, async () => {
  const r123 = await daemon.raw("/ws/reel/123");
  const r456 = await daemon.raw("/ws/reel/456");
  await sleep(100);

  await daemon.publish("reel:123", "reel_update", { views: 100 });
  const got123 = parseText(await r123.messages.next(5000));
  assert.equal(got123.topic, "reel:123");
  await sleep(100);
  await daemon.publish("reel:456", "reel_update", { views: 1 });
  // The first thing /ws/reel/456 receives is its own update.
  assert.deepEqual(parseText(await r456.messages.next(5000)), {
    topic: "reel:456",
    event: "reel_update",
    payload: { seq: 1, views: 1 },
  });
});

test("/ws/system receives system notices (admin token)", T, async () => {
  await assert.rejects(daemon.raw("/ws/system"), /403/, "anonymous");
  const client = await daemon.raw(`/ws/system?token=${await daemon.token("ops", { admin: true })}`);
  await sleep(100);
  await daemon.publish("system", "system_notice", { text: "hello" });
  assert.deepEqual(parseText(await client.messages.next(5000)), {
    topic: "system",
    event: "system_notice",
    payload: { seq: 1, text: "hello" },
  });
});

test("the daemon exits 0 on SIGTERM", T, async () => {
  const exit = await daemon.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
});

// Producers on the C ABI, and clients on the protobuf wire format: the official phoenix
// client connected with `format=protobuf` receives broadcasts as V2 kind-2 binary frames
// (an ArrayBuffer) whose payload is a kronop.v1.Envelope, while JSON clients of the same
// topic receive the same message as JSON.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { join, joinOk, kronopProto, sleep, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;
let Envelope;

before(async () => {
  daemon = await startDaemon();
  Envelope = (await kronopProto()).lookupType("kronop.v1.Envelope");
});

after(async () => {
  if (daemon) await daemon.stop();
});

// An Envelope as a plain object: 64-bit integers as strings, enums as names, defaults
// omitted (so a comparison sees exactly what was sent), and a JSON body parsed.
function decodeEnvelope(payload) {
  assert.ok(payload instanceof ArrayBuffer, `a binary payload, got ${typeof payload}`);
  const msg = Envelope.decode(new Uint8Array(payload));
  const obj = Envelope.toObject(msg, { longs: String, enums: String, bytes: String });
  if (obj.json !== undefined) obj.json = JSON.parse(Buffer.from(obj.json, "base64").toString());
  return obj;
}

const reelUpdate = {
  id: "upd-1",
  reel_id: 123,
  update_data: { views: "1500", likes: "42" },
  target_channel: "reel:123",
  timestamp: "1764190000000",
  priority: "PRIORITY_HIGH",
};
// The same update as JSON clients get it: 64-bit counts and times as numbers, enums as words.
const reelUpdateJson = { ...reelUpdate, timestamp: 1764190000000, priority: "high" };

test("a typed ReelUpdate published through the C ABI reaches protobuf, JSON and plain clients", T, async () => {
  const pbSocket = await daemon.phoenix({ params: { format: "protobuf" } });
  const jsonSocket = await daemon.phoenix();
  const pb = await joinOk(pbSocket, "reel:123", { events: ["reel_update"] });
  const js = await joinOk(jsonSocket, "reel:123", { events: ["reel_update"] });
  const plain = await daemon.raw("/ws/reel/123");

  for (const n of [1, 2]) {
    const envelope = Envelope.encode(
      Envelope.fromObject({
        topic: "reel:123",
        event: "reel_update",
        priority: "PRIORITY_HIGH",
        reel_update: { ...reelUpdate, id: `upd-${n}` },
      }),
    ).finish();
    // Each c_publish run is a new producer handle: its own sequence starts at 1.
    const { seq: producerSeq } = await daemon.publishEnvelopeC(envelope);
    assert.equal(producerSeq, "1", "the C handle's own sequence");
  }

  for (const n of [1, 2]) {
    const got = decodeEnvelope(await pb.queues.reel_update.next(5000, `protobuf update #${n}`));
    assert.equal(got.topic, "reel:123");
    assert.equal(got.event, "reel_update");
    assert.equal(got.seq, String(n), "the per-topic seq is a field of the Envelope");
    assert.equal(got.priority, "PRIORITY_HIGH");
    assert.ok(BigInt(got.publish_time_ns) > 0n, "publish_time_ns is carried");
    assert.deepEqual(got.reel_update, { ...reelUpdate, id: `upd-${n}` });
    assert.equal(got.json, undefined, "a typed body is not also sent as JSON");

    const json = await js.queues.reel_update.next(5000, `JSON update #${n}`);
    assert.deepEqual(json, { seq: n, ...reelUpdateJson, id: `upd-${n}` });

    const frame = await plain.messages.next(5000, `plain update #${n}`);
    assert.deepEqual(JSON.parse(frame.text), {
      topic: "reel:123",
      event: "reel_update",
      payload: { seq: n, ...reelUpdateJson, id: `upd-${n}` },
    });
  }
});

test("a JSON reel_update that fits the schema arrives typed; one that does not stays JSON", T, async () => {
  const pbSocket = await daemon.phoenix({ params: { format: "protobuf" } });
  const pb = await joinOk(pbSocket, "reel:77", { events: ["reel_update"] });

  const fits = { id: "j-1", reel_id: 77, update_data: { views: "10" } };
  await daemon.publish("reel:77", "reel_update", fits);
  let got = decodeEnvelope(await pb.queues.reel_update.next(5000, "the fitting update"));
  assert.equal(got.seq, "1");
  assert.deepEqual(got.reel_update, fits);

  // The seed's curl example: update_data values are JSON integers, which the schema's string
  // map takes as their decimal text, and the priority is a word: it arrives typed too.
  const seedLike = { update_data: { views: 1500, likes: 42 }, priority: "high" };
  await daemon.publish("reel:77", "reel_update", seedLike);
  got = decodeEnvelope(await pb.queues.reel_update.next(5000, "the seed-like update"));
  assert.equal(got.seq, "2");
  assert.deepEqual(got.reel_update, {
    update_data: { views: "1500", likes: "42" },
    priority: "PRIORITY_HIGH",
  });

  // What the schema cannot hold (a fraction in the string map): the producer's JSON as sent.
  const loose = { update_data: { ratio: 0.5 } };
  await daemon.publish("reel:77", "reel_update", loose);
  got = decodeEnvelope(await pb.queues.reel_update.next(5000, "the loose update"));
  assert.equal(got.seq, "3");
  assert.equal(got.reel_update, undefined);
  assert.deepEqual(got.json, loose);

  // An event without a schema: JSON in the Envelope as well.
  const { queues } = await joinOk(pbSocket, "reel:78", { events: ["viewers"] });
  await daemon.publish("reel:78", "viewers", { count: 3 });
  got = decodeEnvelope(await queues.viewers.next(5000, "the schemaless event"));
  assert.deepEqual(got.json, { count: 3 });
});

test("the C ABI's JSON publish and kronopctl's share the topic's sequence", T, async () => {
  const socket = await daemon.phoenix();
  const { queues } = await joinOk(socket, "reel:500", { events: ["reel_update"] });
  await daemon.publish("reel:500", "reel_update", { views: 1 });
  await daemon.publishC("reel:500", "reel_update", { views: 2 });
  await daemon.publish("reel:500", "reel_update", { views: 3 });
  for (const n of [1, 2, 3]) {
    assert.deepEqual(await queues.reel_update.next(5000, `update #${n}`), { seq: n, views: n });
  }
});

test("a binary push from the phoenix client is decoded and answered", T, async () => {
  const pbSocket = await daemon.phoenix({ params: { format: "protobuf" } });
  const { channel } = await joinOk(pbSocket, "reel:9");
  const reply = await new Promise((resolve) => {
    channel
      .push("dance", new Uint8Array([1, 2, 3]).buffer)
      .receive("ok", (r) => resolve({ status: "ok", r }))
      .receive("error", (r) => resolve({ status: "error", r }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
  // An event the server does not handle is answered as such (likes: interactions.test.mjs).
  assert.deepEqual(reply, { status: "error", r: { reason: "unhandled event" } });
  assert.equal(pbSocket.isConnected(), true, "the socket stays open");
});

test("an unknown format is refused at the handshake with 400", T, async () => {
  await assert.rejects(daemon.raw("/ws/websocket?vsn=2.0.0&format=xml"), /400/);
  // Others are unaffected.
  const socket = await daemon.phoenix();
  const r = await join(socket, "reel:1");
  assert.equal(r.status, "ok");
  await sleep(0);
});

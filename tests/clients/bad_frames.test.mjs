// Bad frames on a Phoenix socket get the right close code, and the daemon keeps serving
// everyone else: a phoenix client joined to reel:900 for the whole file must receive a
// broadcast after each case.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";

import {
  WS_GUID,
  connectTcp,
  encodeFrame,
  joinOk,
  readFrame,
  readHttpHead,
  startDaemon,
  withTimeout,
} from "./helpers.mjs";

const PHX_PATH = "/ws/websocket?vsn=2.0.0";
const MAX_MESSAGE = 64 * 1024;
const T = { timeout: 30000 };
let daemon;
let witness; // { queues } of a phoenix channel on reel:900
let probes = 0;

before(async () => {
  daemon = await startDaemon();
  const socket = await daemon.phoenix();
  witness = await joinOk(socket, "reel:900", { events: ["reel_update"] });
});

after(async () => {
  if (daemon) await daemon.stop();
});

// The witness still receives a broadcast, with the next seq.
async function assertStillServing(label) {
  probes += 1;
  let payload;
  try {
    daemon.assertAlive();
    await daemon.publish("reel:900", "reel_update", { probe: label });
    payload = await witness.queues.reel_update.next(
      5000,
      `the witness's broadcast ${label} (the daemon stopped serving others)`,
    );
  } catch (err) {
    daemon.assertAlive(); // "kronopd died (...)" says more than a timeout
    throw err;
  }
  assert.deepEqual(payload, { seq: probes, probe: label });
}

test("the witness receives a broadcast before any bad frame", T, async () => {
  await assertStillServing("before any bad frame");
});

test("invalid UTF-8 in a text message: close 1007", T, async () => {
  const client = await daemon.raw(PHX_PATH);
  // 0xC3 0x28 is an invalid 2-byte sequence; 0xFF never appears in UTF-8.
  client.ws.send(Buffer.from([0x5b, 0x22, 0xc3, 0x28, 0xff, 0x22, 0x5d]), { binary: false });
  const { code } = await client.waitClose(3000);
  assert.equal(code, 1007);
  await assertStillServing("after invalid utf-8");
});

test("a message over 64 KiB: close 1009", T, async () => {
  const client = await daemon.raw(PHX_PATH);
  const pad = "x".repeat(MAX_MESSAGE + 1024);
  client.ws.send(JSON.stringify(["1", "1", "reel:1", "phx_join", { pad }]));
  const { code } = await client.waitClose(3000);
  assert.equal(code, 1009);
  await assertStillServing("after oversized message");
});

test("a message over 64 KiB in fragments: close 1009", T, async () => {
  const client = await daemon.raw(PHX_PATH);
  const chunk = "y".repeat(16 * 1024);
  client.ws.send(`["1","1","reel:1","phx_join",{"pad":"`, { fin: false });
  for (let i = 0; i < 5; i++) client.ws.send(chunk, { fin: false });
  client.ws.send(`"}]`, { fin: true });
  const { code } = await client.waitClose(3000);
  assert.equal(code, 1009);
  await assertStillServing("after oversized fragmented message");
});

test("garbage JSON: the daemon keeps serving other clients", T, async (t) => {
  // Phoenix itself closes with 1011 here; Kronop may reply with an error or close with a
  // clear code. What matters to everyone else is that the daemon keeps serving.
  for (const garbage of ["not json", "this is {not json", '{"topic":"reel:1"}', "[1,2]", "[]"]) {
    const client = await daemon.raw(PHX_PATH);
    client.ws.send(garbage);
    const outcome = await Promise.race([
      client.messages.next(2000).then((m) => `reply ${m.text}`),
      client.closed.then(({ code }) => `close ${code}`),
    ]).catch(() => "nothing within 2 s");
    t.diagnostic(`${JSON.stringify(garbage)} -> ${outcome}`);
    await client.close();
    await assertStillServing(`after ${JSON.stringify(garbage)}`);
  }

  // A new phoenix client can still connect, join and receive.
  const socket = await daemon.phoenix();
  const { queues } = await joinOk(socket, "reel:901", { events: ["reel_update"] });
  await daemon.publish("reel:901", "reel_update", { views: 1 });
  assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 1 });
});

test("an unmasked client frame: close 1002 (raw TCP)", T, async () => {
  const conn = await connectTcp(daemon.port);
  try {
    const key = randomBytes(16).toString("base64");
    conn.write(
      `GET ${PHX_PATH} HTTP/1.1\r\n` +
        `Host: 127.0.0.1:${daemon.port}\r\n` +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${key}\r\n` +
        "Sec-WebSocket-Version: 13\r\n" +
        "\r\n",
    );
    const head = await readHttpHead(conn);
    assert.equal(head.status, 101, `upgrade response: ${head.statusLine}`);
    const accept = createHash("sha1").update(key + WS_GUID).digest("base64");
    assert.equal(head.headers["sec-websocket-accept"], accept);

    conn.write(encodeFrame(0x1, '["1","1","reel:1","phx_join",{}]', { mask: null }));
    const frame = await readFrame(conn, 3000);
    assert.equal(frame.first, 0x88, `first byte 0x${frame.first.toString(16)}: want a close frame`);
    assert.equal(frame.masked, false, "server frames are not masked");
    assert.ok(frame.payload.length >= 2, "the close frame carries a status code");
    assert.equal(frame.payload[0], 0x03);
    assert.equal(frame.payload[1], 0xea, `close code ${frame.payload.readUInt16BE(0)}`);

    // Finish the close handshake as a client would; the server then closes the TCP
    // connection.
    conn.write(encodeFrame(0x8, Buffer.from([0x03, 0xea])));
    await withTimeout(conn.closed, 3000, "the server to close the TCP connection");
  } finally {
    conn.destroy();
  }
  await assertStillServing("after unmasked frame");
});

test("the daemon exits 0 on SIGTERM", T, async () => {
  const exit = await daemon.stop();
  assert.deepEqual(exit, { code: 0, signal: null });
});

// Deadlines for every stage of a connection (slowloris): the HTTP request must be complete
// within --header-timeout-ms of the connect, a Phoenix socket must join within it after the
// upgrade, and after that only complete messages reset --idle-timeout-ms, not stray bytes.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";

import {
  connectTcp,
  encodeFrame,
  joinOk,
  readFrame,
  readHttpHead,
  sleep,
  startDaemon,
  withTimeout,
} from "./helpers.mjs";

const HEADER_TIMEOUT_MS = 1000;
const IDLE_TIMEOUT_MS = 4000;
const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon({
    extraArgs: [
      "--header-timeout-ms",
      String(HEADER_TIMEOUT_MS),
      "--idle-timeout-ms",
      String(IDLE_TIMEOUT_MS),
    ],
  });
});

after(async () => {
  if (daemon) await daemon.stop();
});

// Sends `bytes` one at a time, `everyMs` apart, until done or `stop()` returns true.
async function trickle(conn, bytes, everyMs, stop) {
  for (const b of bytes) {
    if (stop()) return;
    conn.write(Buffer.from([b]));
    await sleep(everyMs);
  }
}

test("a request trickled one byte at a time gets 408 after --header-timeout-ms", T, async () => {
  const conn = await connectTcp(daemon.port);
  try {
    const started = Date.now();
    let closed = false;
    conn.closed.then(() => (closed = true));
    // 10 bytes a second: each byte used to reset the idle timer, so this stayed open.
    const request = Buffer.from(
      `GET /ws/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:${daemon.port}\r\n` +
        "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    );
    const sending = trickle(conn, request, 100, () => closed);
    const head = await readHttpHead(conn, HEADER_TIMEOUT_MS + 3000);
    assert.equal(head.status, 408);
    await withTimeout(conn.closed, 3000, "the connection to be closed after the 408");
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= HEADER_TIMEOUT_MS - 100, `closed after ${elapsed} ms, before the deadline`);
    assert.ok(elapsed < IDLE_TIMEOUT_MS, `closed after ${elapsed} ms: the idle timeout, not the header one`);
    await sending;
  } finally {
    conn.destroy();
  }
});

test("a Phoenix socket that sends heartbeats but never joins is closed with 1008", T, async () => {
  const client = await daemon.raw("/ws/websocket?vsn=2.0.0");
  const started = Date.now();
  let ref = 0;
  let open = true;
  client.closed.then(() => (open = false));
  const beating = (async () => {
    while (open && Date.now() - started < HEADER_TIMEOUT_MS + 4000) {
      client.ws.send(JSON.stringify([null, String(++ref), "phoenix", "heartbeat", {}]));
      await sleep(200);
    }
  })();
  const { code, reason } = await client.waitClose(HEADER_TIMEOUT_MS + 3000);
  assert.equal(code, 1008);
  assert.match(reason, /no channel joined/);
  assert.ok(Date.now() - started >= HEADER_TIMEOUT_MS - 100, "closed before the deadline");
  await beating;
});

test("a Phoenix client that joins in time outlives --header-timeout-ms", T, async () => {
  const socket = await daemon.phoenix({ heartbeatIntervalMs: 500 });
  await joinOk(socket, "reel:1");
  await sleep(HEADER_TIMEOUT_MS + 1500);
  assert.equal(socket.closes.length, 0, "the socket was closed");
  assert.ok(socket.isConnected());
});

test("bytes of an incomplete frame do not reset --idle-timeout-ms", T, async () => {
  const conn = await connectTcp(daemon.port);
  try {
    conn.write(
      `GET /ws/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:${daemon.port}\r\n` +
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n` +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    );
    assert.equal((await readHttpHead(conn)).status, 101);
    conn.write(encodeFrame(0x1, JSON.stringify(["1", "1", "reel:1", "phx_join", {}])));
    const reply = JSON.parse((await readFrame(conn)).payload.toString("utf8"));
    assert.equal(reply[3], "phx_reply");
    assert.equal(reply[4].status, "ok");
    const started = Date.now();
    let closed = false;
    conn.closed.then(() => (closed = true));
    // A 1000-byte text frame, sent a byte every 100 ms: never complete before the timeout.
    const frame = encodeFrame(0x1, "x".repeat(1000));
    const sending = trickle(conn, frame, 100, () => closed);
    let close;
    for (;;) {
      const f = await readFrame(conn, IDLE_TIMEOUT_MS + 3000);
      if (f.opcode === 0x8) {
        close = f;
        break;
      }
    }
    const elapsed = Date.now() - started;
    assert.equal(close.payload.readUInt16BE(0), 1000);
    assert.match(close.payload.subarray(2).toString("utf8"), /idle timeout/);
    assert.ok(elapsed >= IDLE_TIMEOUT_MS - 200, `closed after ${elapsed} ms, before the timeout`);
    await withTimeout(conn.closed, 5000, "the connection to be closed");
    await sending;
  } finally {
    conn.destroy();
  }
});

// The soak test's hostile clients (bench/soak_driver.mjs): each attack, and the answer
// kronopd must give to it. An attack resolves to "ok" or to what happened instead.
import { connectTcp, encodeFrame, readFrame, readHttpHead, sleep } from "../tests/clients/helpers.mjs";

const UPGRADE =
  "GET /ws/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\n\r\n";

async function upgraded(port) {
  const conn = await connectTcp(port());
  conn.write(UPGRADE);
  const head = await readHttpHead(conn, 5000);
  if (head.status !== 101) throw new Error(`upgrade answered ${head.status}`);
  return conn;
}

// Reads frames until a close frame; resolves to its code (or "no close frame").
async function closeCode(conn, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return "still open";
    let f;
    try {
      f = await readFrame(conn, left);
    } catch (err) {
      return /timed out/.test(err.message) ? "still open" : "closed without a close frame";
    }
    if (f.opcode === 8) return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : "empty close";
  }
}

// Writes `chunk` again and again until the peer closes or `ms` pass.
async function flood(conn, chunk, ms) {
  const until = Date.now() + ms;
  while (!conn.ended && Date.now() < until) {
    if (!conn.sock.write(chunk)) await new Promise((r) => conn.sock.once("drain", r).once("close", r));
  }
}

// Sends `frame` over and over (10 s at most) and expects the close code `want`.
async function floodAnswer(conn, frame, want) {
  const code = closeCode(conn, 10000);
  await flood(conn, Buffer.concat(Array.from({ length: 4096 }, () => frame)), 10000);
  const c = await code;
  conn.destroy();
  return c === want ? "ok" : `close ${c}`;
}

export function makeAttacks(port) {
  return {
    // Headers one byte a second: closed at --header-timeout-ms (10 s), 408.
    slowloris: async () => {
      const conn = await connectTcp(port());
      const text = "GET /ws/websocket?vsn=2.0.0 HTTP/1.1\r\nX-Slow: ";
      const started = Date.now();
      let i = 0;
      while (!conn.ended && Date.now() - started < 16000) {
        conn.write(text[i % text.length]);
        i += 1;
        await sleep(1000);
      }
      const took = Date.now() - started;
      const status = /^HTTP\/1\.1 (\d+)/.exec(conn.buf.toString("latin1"))?.[1];
      conn.destroy();
      return took < 15000 && status === "408" ? "ok" : `open ${took} ms, status ${status}`;
    },
    // Unsolicited pongs as fast as the socket takes them: 1008.
    pong_flood: async () => floodAnswer(await upgraded(port), encodeFrame(0xa, ""), 1008),
    // A message that never ends: empty continuation frames after an unfinished text frame.
    continuation_flood: async () => {
      const conn = await upgraded(port);
      conn.write(encodeFrame(0x1, "[", { fin: false }));
      return floodAnswer(conn, encodeFrame(0x0, "", { fin: false }), 1008);
    },
    // A join_ref longer than kronopd keeps: 1008.
    long_join_ref: async () => {
      const conn = await upgraded(port);
      const ref = "r".repeat(2000);
      conn.write(encodeFrame(0x1, JSON.stringify([ref, ref, "reel:soak-0", "phx_join", {}])));
      const c = await closeCode(conn, 5000);
      conn.destroy();
      return c === 1008 ? "ok" : `close ${c}`;
    },
    // Joins of topics nobody publishes to, then gone: the topic table must not keep them.
    fresh_topics: async () => {
      const conn = await upgraded(port);
      const n = 20;
      const base = Math.floor(Math.random() * 1e12);
      for (let i = 0; i < n; i++) {
        conn.write(encodeFrame(0x1, JSON.stringify([`${i}`, `${i}`, `reel:hostile-${base + i}`, "phx_join", {}])));
      }
      let ok = 0;
      try {
        while (ok < n) {
          const f = await readFrame(conn, 5000);
          if (f.opcode === 1 && /"status":"ok"/.test(f.payload.toString())) ok += 1;
        }
      } catch {
        // counted below
      }
      conn.destroy();
      return ok === n ? "ok" : `${ok} of ${n} joins answered ok`;
    },
    // Bytes that are no HTTP request: 400.
    garbage: async () => {
      const conn = await connectTcp(port());
      const junk = Buffer.from(Array.from({ length: 300 }, () => 1 + Math.floor(Math.random() * 255)));
      conn.write(Buffer.concat([junk, Buffer.from("\r\n\r\n")]));
      let head;
      try {
        head = await readHttpHead(conn, 5000);
      } catch (err) {
        conn.destroy();
        return `no answer: ${err.message}`;
      }
      conn.destroy();
      return head.status === 400 ? "ok" : `status ${head.status}`;
    },
    // A frame announcing a terabyte: 1009.
    oversized: async () => {
      const conn = await upgraded(port);
      const head = Buffer.from([0x81, 0xff, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
      conn.write(head);
      const c = await closeCode(conn, 5000);
      conn.destroy();
      return c === 1009 ? "ok" : `close ${c}`;
    },
    // A client frame without a mask: 1002.
    unmasked: async () => {
      const conn = await upgraded(port);
      conn.write(encodeFrame(0x1, "[null,null,\"phoenix\",\"heartbeat\",{}]", { mask: null }));
      const c = await closeCode(conn, 5000);
      conn.destroy();
      return c === 1002 ? "ok" : `close ${c}`;
    },
  };
}

// Per-socket message rate, per-socket channel and per-address connection limits: a violation gets a clear close
// code or HTTP status, is counted, and other clients are not affected.
import assert from "node:assert/strict";
import { test } from "node:test";

import { eventually, join, joinOk, sleep, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };

test("a socket sending faster than --max-client-messages-per-second is closed with 1008", T, async () => {
  const daemon = await startDaemon({ extraArgs: ["--max-client-messages-per-second", "20"] });
  try {
    const polite = await daemon.phoenix();
    const { queues } = await joinOk(polite, "reel:5", { events: ["reel_update"] });
    const flood = await daemon.raw("/ws/websocket?vsn=2.0.0");
    // 40 allowed at once (twice the rate), then the limit.
    for (let i = 0; i < 200; i++) flood.ws.send(`[null,"${i}","phoenix","heartbeat",{}]`);
    const { code, reason } = await flood.waitClose(5000);
    assert.equal(code, 1008);
    assert.match(reason, /rate/);
    assert.equal(Number((await daemon.clientStats()).closed_rate_limited), 1);
    // Heartbeats at the usual pace are fine, and the polite client is served.
    await daemon.publish("reel:5", "reel_update", { views: 1 });
    assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 1 });
  } finally {
    await daemon.stop();
  }
});

test("--max-connections-per-ip refuses the connection over the limit, and admits after a close", T, async () => {
  const daemon = await startDaemon({ extraArgs: ["--max-connections-per-ip", "3"] });
  try {
    const open = [];
    for (let i = 0; i < 3; i++) open.push(await daemon.raw("/ws/reel/1"));
    await assert.rejects(daemon.raw("/ws/reel/1", { openMs: 3000 }), /429|socket hang up|ECONNRESET|closed/);
    assert.ok(Number((await daemon.clientStats()).refused_per_ip) >= 1);
    await open[0].close();
    await sleep(200); // the server sees the close
    open.push(await daemon.raw("/ws/reel/1"));
    await daemon.publish("reel:1", "reel_update", { views: 2 });
    for (const c of open.slice(1)) {
      const m = await c.messages.next(5000);
      assert.equal(JSON.parse(m.text).payload.views, 2);
    }
  } finally {
    await daemon.stop();
  }
});

test("joins beyond --max-channels are refused with a reason and counted", T, async () => {
  const daemon = await startDaemon({ extraArgs: ["--max-channels", "2"] });
  try {
    const socket = await daemon.phoenix();
    await joinOk(socket, "reel:1");
    await joinOk(socket, "reel:2");
    const third = await join(socket, "reel:3");
    third.channel.leave();
    assert.deepEqual(third.response, { reason: "too many channels joined" });
    assert.equal(Number((await daemon.clientStats()).joins_over_limit), 1);
    const text = await (await fetch(`http://127.0.0.1:${daemon.port}/metrics`)).text();
    assert.match(text, /^kronop_joins_over_limit_total 1$/m);
    // The socket keeps its two channels.
    await daemon.publish("reel:2", "reel_update", { views: 3 });
    await eventually(() => socket.frames.some((f) => f.topic === "reel:2" && f.event === "reel_update"), 3000, "reel:2 still served");
  } finally {
    await daemon.stop();
  }
});

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

// Every frame costs a token of --max-client-messages-per-second (100, bursts of 200, by
// default), not only whole messages and pings: frames that make no message used to be free.
test("an unsolicited-pong flood is closed with 1008", T, async () => {
  const daemon = await startDaemon();
  try {
    const polite = await daemon.phoenix();
    const { queues } = await joinOk(polite, "reel:7", { events: ["reel_update"] });
    const flood = await daemon.raw("/ws/websocket?vsn=2.0.0");
    for (let i = 0; i < 1000; i++) flood.ws.pong("x");
    const { code, reason } = await flood.waitClose(5000);
    assert.equal(code, 1008);
    assert.match(reason, /rate/);
    assert.equal(Number((await daemon.clientStats()).closed_rate_limited), 1);
    await daemon.publish("reel:7", "reel_update", { views: 1 });
    assert.deepEqual(await queues.reel_update.next(5000), { seq: 1, views: 1 });
  } finally {
    await daemon.stop();
  }
});

test("an endless message of empty continuation frames is closed with 1008", T, async () => {
  const daemon = await startDaemon();
  try {
    const flood = await daemon.raw("/ws/websocket?vsn=2.0.0");
    flood.ws.send("[", { fin: false }); // a text message begins...
    for (let i = 0; i < 1000; i++) flood.ws.send("", { fin: false }); // ...and never ends
    const { code, reason } = await flood.waitClose(5000);
    assert.equal(code, 1008);
    assert.match(reason, /rate/);
  } finally {
    await daemon.stop();
  }
});

test("a message in a few fragments, pings and heartbeats stay well within the limit", T, async () => {
  const daemon = await startDaemon();
  try {
    const client = await daemon.raw("/ws/websocket?vsn=2.0.0");
    const join = JSON.stringify(["1", "1", "reel:8", "phx_join", {}]);
    for (let i = 0; i < join.length; i += 8) {
      client.ws.send(join.slice(i, i + 8), { fin: i + 8 >= join.length });
    }
    const reply = JSON.parse((await client.messages.next(5000, "the join reply")).text);
    assert.deepEqual([reply[0], reply[3], reply[4].status], ["1", "phx_reply", "ok"]);
    for (let i = 0; i < 20; i++) client.ws.ping();
    client.ws.send(JSON.stringify([null, "2", "phoenix", "heartbeat", {}]));
    // (The join is followed by its presence_state push.)
    let hb;
    do hb = JSON.parse((await client.messages.next(5000, "the heartbeat reply")).text);
    while (hb[1] !== "2");
    assert.deepEqual([hb[2], hb[3], hb[4].status], ["phoenix", "phx_reply", "ok"]);
    assert.equal(client.ws.readyState, client.ws.OPEN);
  } finally {
    await daemon.stop();
  }
});

// A channel keeps its join_ref for its whole life: refs are bounded (64 bytes), a longer one
// closes the socket (1008) and nothing of it is kept.
test("a join_ref or ref over 64 bytes closes with 1008; 64 bytes is joined", T, async () => {
  const daemon = await startDaemon();
  try {
    const ok = await daemon.raw("/ws/websocket?vsn=2.0.0");
    const ref64 = "7".repeat(64);
    ok.ws.send(JSON.stringify([ref64, ref64, "reel:9", "phx_join", {}]));
    const reply = JSON.parse((await ok.messages.next(5000, "the join reply")).text);
    assert.deepEqual([reply[0], reply[1], reply[4].status], [ref64, ref64, "ok"]);

    for (const msg of [
      ["7".repeat(65), "1", "reel:9", "phx_join", {}],
      ["1", "7".repeat(65), "reel:9", "phx_join", {}],
      [null, "x".repeat(60000), "phoenix", "heartbeat", {}],
    ]) {
      const bad = await daemon.raw("/ws/websocket?vsn=2.0.0");
      bad.ws.send(JSON.stringify(msg));
      const { code, reason } = await bad.waitClose(5000);
      assert.equal(code, 1008);
      assert.match(reason, /longer than 64 bytes/);
    }
    assert.equal(ok.ws.readyState, ok.ws.OPEN, "the socket with a 64-byte ref was closed");
  } finally {
    await daemon.stop();
  }
});

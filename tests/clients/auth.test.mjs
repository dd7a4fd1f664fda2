// Connect-time authentication with the official client: its authToken option (sent as the
// "base64url.bearer.phx.<token>" subprotocol, answered with "phoenix") and the token socket
// param; user:<id> for that user only; target_users; forged, expired and wrong-user tokens.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { join, joinOk, sleep, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  if (daemon) await daemon.stop();
});

// A JWT signed here with Node's crypto, so the tests do not depend on kronopctl alone.
function sign(payload, secret, header = { alg: "HS256", typ: "JWT" }) {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const signing = `${b(header)}.${b(payload)}`;
  return `${signing}.${crypto.createHmac("sha256", secret).update(signing).digest("base64url")}`;
}
const secret = () => readFileSync(daemon.secretFile, "utf8").trim();
const now = () => Math.floor(Date.now() / 1000);

test("authToken: the user joins user:<own id> and gets its events; not another user's", T, async () => {
  const alice = await daemon.phoenix({ authToken: await daemon.token("alice") });
  const own = await joinOk(alice, "user:alice", { events: ["user_activity"] });
  const other = await join(alice, "user:bob");
  other.channel.leave();
  assert.deepEqual(other.response, { reason: "unauthorized" });
  await daemon.publish("user:alice", "user_activity", { status: "online" });
  assert.deepEqual(await own.queues.user_activity.next(5000), { seq: 1, status: "online" });
});

test("the token socket param works as well, with a token from another library", T, async () => {
  const token = sign({ sub: "carol", exp: now() + 60 }, secret());
  const carol = await daemon.phoenix({ params: { token } });
  await joinOk(carol, "user:carol");
  const raw = await daemon.raw(`/ws/user/carol?token=${token}`);
  await daemon.publish("user:carol", "user_activity", { status: "away" });
  const frame = await raw.messages.next(5000);
  assert.deepEqual(JSON.parse(frame.text).payload, { seq: 1, status: "away" });
  await assert.rejects(daemon.raw(`/ws/user/dave?token=${token}`), /403/, "another user's");
  await assert.rejects(daemon.raw("/ws/user/carol"), /403/, "anonymous");
});

test("forged, expired, not-yet-valid and unsigned tokens are refused at connect (403)", T, async () => {
  const bad = {
    forged: sign({ sub: "alice", exp: now() + 60 }, "not-the-secret"),
    expired: sign({ sub: "alice", exp: now() - 5 }, secret()),
    notYet: sign({ sub: "alice", nbf: now() + 3600 }, secret()),
    algNone: `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from('{"sub":"alice"}').toString("base64url")}.`,
    garbage: "not-a-token",
  };
  for (const [what, token] of Object.entries(bad)) {
    await assert.rejects(
      daemon.raw(`/ws/websocket?vsn=2.0.0&token=${encodeURIComponent(token)}`),
      /403/,
      `${what} token`,
    );
  }
  // The same refusal for the official client's authToken (the subprotocol form): its
  // socket never opens.
  await assert.rejects(daemon.phoenix({ authToken: bad.forged, openMs: 1500 }), /timed out/);
  // Anonymous sockets still work (--allow-anonymous is the default).
  const anon = await daemon.phoenix();
  await joinOk(anon, "reel:1");
});

test("target_users: only those users' sockets get the update", T, async () => {
  const alice = await daemon.phoenix({ authToken: await daemon.token("alice") });
  const bob = await daemon.phoenix({ authToken: await daemon.token("bob") });
  const anon = await daemon.phoenix();
  const a = await joinOk(alice, "reel:77", { events: ["reel_update"] });
  const b = await joinOk(bob, "reel:77", { events: ["reel_update"] });
  const n = await joinOk(anon, "reel:77", { events: ["reel_update"] });
  await daemon.publish("reel:77", "reel_update", { reel_id: 77, target_users: ["alice"] });
  await daemon.publish("reel:77", "reel_update", { reel_id: 77, views: 5 });
  assert.deepEqual(await a.queues.reel_update.next(5000), {
    seq: 1,
    reel_id: 77,
    target_users: ["alice"],
  });
  assert.deepEqual(await a.queues.reel_update.next(5000), { seq: 2, reel_id: 77, views: 5 });
  assert.deepEqual(await b.queues.reel_update.next(5000), { seq: 2, reel_id: 77, views: 5 });
  assert.deepEqual(await n.queues.reel_update.next(5000), { seq: 2, reel_id: 77, views: 5 });
  await sleep(100);
  assert.equal(b.queues.reel_update.length, 0);
  assert.equal(n.queues.reel_update.length, 0);
});

test("--no-allow-anonymous: a socket without a token is refused", T, async () => {
  const strict = await startDaemon({ extraArgs: ["--no-allow-anonymous"] });
  try {
    await assert.rejects(strict.raw("/ws/websocket?vsn=2.0.0"), /403/);
    const s = await strict.phoenix({ authToken: await strict.token("erin") });
    await joinOk(s, "reel:1");
  } finally {
    await strict.stop();
  }
});

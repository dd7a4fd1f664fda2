// Live interactions with the official client: likes, comments and shares pushed on reel:<id>
// are validated, answered, broadcast to the reel's viewers as `interaction` with the reel's
// totals, and counted in a `reel_update`; producers can publish interactions through the
// rings too. Per-user rate limit (--max-interactions-per-second).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { eventually, joinOk, push, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon({ extraArgs: ["--max-interactions-per-second", "5"] });
});

after(async () => {
  if (daemon) await daemon.stop();
});

const http = (path, init) => fetch(`http://127.0.0.1:${daemon.port}${path}`, init);

async function member(user, topic) {
  const socket = await daemon.phoenix(user ? { authToken: await daemon.token(user) } : {});
  return joinOk(socket, topic, { events: ["interaction", "reel_update"] });
}

test("a like from one client reaches another, with the reel's totals", T, async () => {
  const alice = await member("alice", "reel:55");
  const bob = await member("bob", "reel:55");
  const r = await push(alice.channel, "like", {});
  assert.equal(r.status, "ok", JSON.stringify(r));
  assert.match(r.r.id, /^[0-9a-f]{20}$/);

  const seen = await bob.queues.interaction.next(5000);
  assert.equal(seen.kind, "like");
  assert.equal(seen.user_id, "alice");
  assert.equal(seen.reel_id, 55);
  assert.equal(seen.id, r.r.id);
  assert.equal(typeof seen.like_count, "number"); // counts are JSON numbers
  assert.equal(seen.like_count, 1);
  assert.equal(typeof seen.seq, "number");
  // The liker sees it too (one stream for every viewer).
  assert.equal((await alice.queues.interaction.next(5000)).id, r.r.id);
  // ... and the counters come as a reel_update.
  const counters = await bob.queues.reel_update.next(5000);
  assert.deepEqual(counters.update_data, { likes: 1, comments: 0, shares: 0 });
  assert.equal(counters.priority, "low");
  assert.equal(typeof counters.timestamp, "number");
});

test("comments carry their text; bad interactions are refused with a reason", T, async () => {
  const carol = await member("carol", "reel:56");
  const dave = await member("dave", "reel:56");
  const text = 'nice "reel" \\ ✓ — 👍';
  assert.equal((await push(carol.channel, "comment", { text })).status, "ok");
  const seen = await dave.queues.interaction.next(5000);
  assert.equal(seen.kind, "comment");
  assert.equal(seen.text, text);
  assert.equal(seen.comment_count, 1);

  const refusals = {
    "empty comment": await push(carol.channel, "comment", { text: "" }),
    "a comment needs a text": await push(carol.channel, "comment", {}),
    "comment too long": await push(carol.channel, "comment", { text: "x".repeat(1001) }),
    "a comment has only a text": await push(carol.channel, "comment", { text: "a", extra: 1 }),
    "a like or a share has no fields": await push(carol.channel, "like", { n: 2 }),
    "text must be a string": await push(carol.channel, "comment", { text: 5 }),
    "unhandled event": await push(carol.channel, "dislike", {}),
  };
  for (const [reason, reply] of Object.entries(refusals)) {
    assert.deepEqual(reply, { status: "error", r: { reason } }, reason);
  }
  // Nothing refused was broadcast: the next interaction dave sees is the share below.
  assert.equal((await push(carol.channel, "share", {})).status, "ok");
  assert.equal((await dave.queues.interaction.next(5000)).kind, "share");
});

test("anonymous sockets may watch but not like", T, async () => {
  const anon = await member(null, "reel:57");
  assert.deepEqual(await push(anon.channel, "like", {}), {
    status: "error",
    r: { reason: "authentication required: connect with a token" },
  });
});

test("likes over the per-user rate are refused, across the user's sockets", T, async () => {
  const a = await member("erin", "reel:58");
  const b = await member("erin", "reel:58");
  const replies = await Promise.all(
    Array.from({ length: 30 }, (_, i) => push(i % 2 ? a.channel : b.channel, "like", {})),
  );
  const ok = replies.filter((r) => r.status === "ok").length;
  const limited = replies.filter(
    (r) => r.status === "error" && r.r.reason === "rate limited: too many interactions",
  ).length;
  assert.equal(ok + limited, 30, JSON.stringify(replies));
  // Burst 10 (twice the rate of 5/s) plus what refilled while the pushes went out.
  assert.ok(ok >= 10 && ok <= 15, `${ok} accepted`);
  const text = await (await http("/metrics")).text();
  assert.match(text, /kronop_interactions_total\{outcome="rate_limited"\} [1-9]/);
});

test("producers publish interactions through the rings; all are counted", T, async () => {
  const viewer = await member("frank", "reel:59");
  // The proto name is still accepted from producers; clients get the word.
  await daemon.publish("reel:59", "interaction", { kind: "KIND_SHARE", user_id: "backend" });
  const seen = await viewer.queues.interaction.next(5000);
  assert.equal(seen.kind, "share");
  assert.equal(seen.share_count, 1);
  await daemon.publish("reel:59", "interaction", { kind: "share", user_id: "backend" });
  assert.equal((await viewer.queues.interaction.next(5000)).share_count, 2);
  assert.equal(seen.reel_id, 59);
  assert.equal((await push(viewer.channel, "like", {})).status, "ok");
  await eventually(
    async () => {
      const body = await (await http("/api/v1/reels/59/updates")).json();
      return body.counters.likes === 1 && body.counters.shares === 2;
    },
    3000,
    "the REST counters",
  );
});

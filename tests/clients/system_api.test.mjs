// The operators' HTTP endpoints on the client port: /metrics (Prometheus text format) and
// /api/v1/system/{health,stats,performance}, /api/v1/connections/stats, read while real clients are
// connected and messages flow.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { eventually, joinOk, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  if (daemon) await daemon.stop();
});

const http = (path, init) => fetch(`http://127.0.0.1:${daemon.port}${path}`, init);

// name{labels} value -> value, from the exposition text.
function sampleOf(text, series) {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

test("/metrics is valid exposition text and follows the clients", T, async () => {
  const socket = await daemon.phoenix();
  await joinOk(socket, "reel:9");
  await daemon.publish("reel:9", "reel_update", { views: 1 });
  await daemon.publish("reel:10", "reel_update", { views: 1 });

  const res = await http("/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const families = new Set();
  for (const line of text.trimEnd().split("\n")) {
    if (line.startsWith("# HELP ")) continue;
    const type = /^# TYPE ([a-z_]+) (counter|gauge|summary)$/.exec(line);
    if (type) {
      assert.ok(!families.has(type[1]), `one TYPE line for ${type[1]}`);
      families.add(type[1]);
      continue;
    }
    assert.match(line, /^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$/, line);
  }
  assert.ok(sampleOf(text, "kronop_connections") >= 1);
  assert.equal(sampleOf(text, 'kronop_channels{kind="reel"}'), 1);
  assert.ok(sampleOf(text, "kronop_messages_total") >= 2);
  assert.ok(sampleOf(text, "kronop_frames_out_total") >= 2);
  assert.ok(sampleOf(text, "kronop_delivery_seconds_count") >= 1, "reel:9's message was delivered");
  assert.ok(sampleOf(text, "kronop_producer_wakeups_total") >= 0);
  // The records were followed by a wait, and the first wait after records polls the rings.
  await eventually(
    async () => sampleOf(await (await http("/metrics")).text(), "kronop_ingest_polls_total") >= 1,
    5000, "a poll of the rings after the records");
  // The durable log's figures: the two messages committed, what that wrote, the compression.
  await eventually(
    async () => sampleOf(await (await http("/metrics")).text(), "kronop_log_messages_total") >= 2,
    5000, "the log to commit the messages");
  // A topic's few messages wait in the journal, then go into a block within a second.
  await eventually(
    async () => sampleOf(await (await http("/metrics")).text(), "kronop_log_blocks_total") >= 1,
    5000, "the messages in a block");
  const later = await (await http("/metrics")).text();
  assert.ok(sampleOf(later, "kronop_log_journaled_total") >= 1);
  assert.ok(sampleOf(later, "kronop_log_compression_ratio") > 0);
  await eventually(
    async () => sampleOf(await (await http("/metrics")).text(), "kronop_log_disk_bytes_per_message") > 0,
    5000, "the log's writes counted");
  assert.ok(sampleOf(later, "kronop_ingest_polls_caught_total") <= sampleOf(later, "kronop_ingest_polls_total"));
  for (const f of ["kronop_connections_closed_total", "kronop_auth_rejected_total",
    "kronop_ring_fill_ratio", "kronop_publish_to_ingest_seconds", "kronop_dropped_low_priority_total",
    "kronop_delivery_seconds"]) {
    assert.ok(families.has(f), `family ${f}`);
  }
});

test("health, stats and connection stats are JSON", T, async () => {
  const health = await (await http("/api/v1/system/health")).json();
  assert.equal(health.healthy, true);
  assert.equal(health.status, "ok");
  assert.equal(health.pid, daemon.proc.pid);
  const stats = await (await http("/api/v1/system/stats")).json();
  assert.equal(stats.shm_name, daemon.shmName);
  assert.ok("clients" in stats && "publish_to_ingest" in stats);
  // Counters are JSON numbers, not proto3-JSON strings.
  assert.equal(typeof stats.records, "number");
  assert.equal(typeof stats.clients.connections_total, "number");
  assert.equal(typeof stats.uptime_ms, "number");
  const conns = await (await http("/api/v1/connections/stats")).json();
  assert.ok(Number(conns.connections_total) >= 1);
  assert.ok("channels_by_kind" in conns);
  const perf = await (await http("/api/v1/system/performance")).json();
  assert.ok(Number(perf.records) >= 2, JSON.stringify(perf));
  assert.ok(Number(perf.publish_to_delivery.count) >= 1);
  assert.ok(Number(perf.frames_out) >= Number(perf.writes) && Number(perf.writes) > 0);
});

test("other methods get 405 with Allow; unknown paths 404 with a JSON error", T, async () => {
  const post = await http("/metrics", { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  assert.equal((await post.json()).error.status, 405);
  const head = await http("/api/v1/system/health", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  const missing = await http("/api/v1/nope");
  assert.equal(missing.status, 404);
  assert.match((await missing.json()).error.message, /no such endpoint/);
});

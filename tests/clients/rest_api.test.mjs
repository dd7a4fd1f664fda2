// The REST API: the seed document's curl commands, run verbatim with the real curl, then
// every way a request can be wrong (each with its status and a JSON error body), protobuf
// bodies, and bearer-token authorization with --no-trust-loopback.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import { after, before, test } from "node:test";

import { eventually, joinOk, kronopProto, run, startDaemon } from "./helpers.mjs";

const T = { timeout: 30000 };
let daemon;
let strict; // --no-trust-loopback: every write needs a token

before(async () => {
  daemon = await startDaemon();
  strict = await startDaemon({ extraArgs: ["--no-trust-loopback"] });
});

after(async () => {
  await Promise.all([daemon?.stop(), strict?.stop()]);
});

const url = (d, path) => `http://127.0.0.1:${d.port}${path}`;

// The "REST API" section of the seed document, as written there. Only the port is changed
// (to this test daemon's); `localhost` stays, so curl resolves it as a user's would.
const SEED = String.raw`
# Create reel update
curl -X POST http://localhost:4000/api/v1/reels/123/updates \
  -H "Content-Type: application/json" \
  -d '{
    "update_data": {
      "type": "view_count",
      "value": 1000
    }
  }'

# Get reel updates
curl http://localhost:4000/api/v1/reels/123/updates

# Update user presence
curl -X POST http://localhost:4000/api/v1/users/user123/presence \
  -H "Content-Type: application/json" \
  -d '{
    "status": "online",
    "current_reel": 123,
    "activity": "watching"
  }'

# Get user presence
curl http://localhost:4000/api/v1/users/user123/presence

# Get system statistics
curl http://localhost:4000/api/v1/system/stats

# Get system health
curl http://localhost:4000/api/v1/system/health
`;

// The commands of SEED: [comment, command] pairs.
function seedCommands(port) {
  const out = [];
  let comment = null;
  let cmd = "";
  for (const line of SEED.split("\n")) {
    if (line.startsWith("# ")) {
      comment = line.slice(2);
    } else if (line.trim() !== "" || cmd !== "") {
      cmd += `${line}\n`;
      if (!line.endsWith("\\") && !/'\{$|^\s+[^']*$/.test(line) && cmd.split("'").length % 2 === 1) {
        out.push([comment, cmd.replaceAll("localhost:4000", `localhost:${port}`).trim()]);
        cmd = "";
      }
    }
  }
  return out;
}

async function curl(command) {
  // -w appends the status on its own line; -s keeps progress output away.
  const r = await run("bash", ["-c", `${command.replace(/^curl /, "curl -s -w '\\n%{http_code}' ")}`]);
  assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
  const lines = r.stdout.trimEnd().split("\n");
  const status = Number(lines.pop());
  return { status, body: JSON.parse(lines.join("\n")) };
}

test("the seed's curl commands work verbatim", T, async () => {
  const viewer = await joinOk(await daemon.phoenix(), "reel:123", { events: ["reel_update"] });
  const cmds = seedCommands(daemon.port);
  assert.equal(cmds.length, 6, JSON.stringify(cmds));
  const results = {};
  for (const [what, cmd] of cmds) results[what] = await curl(cmd);

  const created = results["Create reel update"];
  assert.equal(created.status, 202);
  assert.equal(created.body.status, "accepted");
  assert.equal(created.body.topic, "reel:123");
  // The update reached a subscriber of reel:123, its numbers still numbers.
  const update = await viewer.queues.reel_update.next(5000);
  assert.deepEqual(update.update_data, { type: "view_count", value: 1000 });
  assert.equal(update.reel_id, 123);
  assert.equal(update.id, created.body.id);
  assert.equal(update.seq, 1);

  const list = results["Get reel updates"];
  assert.equal(list.status, 200);
  assert.equal(list.body.reel_id, 123);
  assert.equal(list.body.updates.length, 1);
  assert.deepEqual(list.body.updates[0], update);

  for (const what of ["Update user presence", "Get user presence"]) {
    const p = results[what];
    assert.equal(p.status, 200, what);
    assert.equal(p.body.user_id, "user123");
    assert.equal(p.body.status, "online");
    assert.equal(p.body.current_reel, 123);
    assert.equal(p.body.activity, "watching");
    assert.ok(!Number.isNaN(Date.parse(p.body.last_seen)));
  }
  assert.equal(results["Get system statistics"].status, 200);
  assert.ok(Number(results["Get system statistics"].body.records) >= 1);
  assert.equal(results["Get system health"].status, 200);
  assert.equal(results["Get system health"].body.healthy, true);
});

async function expectError(res, status, pattern) {
  assert.equal(res.status, status, `${res.status} ${await res.clone().text()}`);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  const body = await res.json();
  assert.equal(body.error.status, status);
  assert.match(body.error.message, pattern);
}

test("bad requests get the right 4xx and a JSON error", T, async () => {
  const post = (path, body, type = "application/json") =>
    fetch(url(daemon, path), { method: "POST", headers: { "content-type": type }, body });
  const p = "/api/v1/reels/9/updates";
  await expectError(await post(p, "{"), 400, /not valid JSON/);
  await expectError(await post(p, "[1]"), 400, /must be a JSON object/);
  await expectError(await post(p, "{}"), 400, /update_data is required/);
  await expectError(await post(p, '{"update_data":1}'), 400, /update_data must be a JSON object/);
  await expectError(await post(p, '{"update_data":{},"x":1}'), 400, /unknown member/);
  await expectError(await post(p, '{"update_data":{},"priority":"urgent"}'), 400, /priority/);
  await expectError(await post(p, '{"update_data":{},"target_users":["a b"]}'), 400, /user id/);
  await expectError(await post(p, "{}", "text/plain"), 415, /Content-Type/);
  await expectError(await post("/api/v1/reels/a%20b/updates", "{}"), 400, /invalid reel id/);
  await expectError(await post("/api/v1/users/u1/presence", '{"status":"gone"}'), 400, /status/);
  await expectError(await post("/api/v1/users/u1/presence", "{}"), 400, /status is required/);
  await expectError(
    await post("/api/v1/users/u1/presence", '{"status":"online","current_reel":-1}'),
    400,
    /current_reel/,
  );
  await expectError(await fetch(url(daemon, p), { method: "PUT", body: "{}" }), 405, /GET or POST/);
  await expectError(await fetch(url(daemon, "/api/v1/users/ghost/presence")), 404, /no presence/);
  await expectError(await fetch(url(daemon, `${p}?limit=0`)), 400, /limit/);
  await expectError(await fetch(url(daemon, "/api/v1/nothing")), 404, /no such endpoint/);
  // The daemon serves on: a good request after all of that.
  const ok = await post(p, '{"update_data":{"views":1},"priority":"high","target_users":["u1"]}');
  assert.equal(ok.status, 202);
});

test("an oversized body is refused with 413 before it is sent", T, async () => {
  const reply = await new Promise((resolve, reject) => {
    const s = net.connect(daemon.port, "127.0.0.1");
    let data = "";
    s.on("data", (d) => {
      data += d;
    });
    s.on("end", () => resolve(data));
    s.on("error", reject);
    // Headers only: the 10 MB the Content-Length announces never come.
    s.write(
      "POST /api/v1/reels/1/updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Content-Length: 10000000\r\n\r\n",
    );
  });
  assert.match(reply, /^HTTP\/1\.1 413 /);
  assert.match(reply, /"status":413/);
});

// Writes `request` on a fresh connection and resolves with everything kronopd sent once it
// closed the connection (a test timeout if it never does).
function rawExchange(d, request) {
  return new Promise((resolve, reject) => {
    const s = net.connect(d.port, "127.0.0.1");
    let data = "";
    s.on("data", (chunk) => {
      data += chunk;
    });
    s.on("end", () => resolve(data));
    s.on("error", reject);
    s.write(request);
  });
}

test("requests that are not sound HTTP/1.1 are refused and closed, never honoured", T, async () => {
  const reel = "/api/v1/reels/77/updates";
  const smuggled = "GET /api/v1/system/health HTTP/1.1\r\nHost: x\r\n\r\n";
  const key = "dGhlIHNhbXBsZSBub25jZQ==";
  const upgrade =
    "GET /ws/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
    `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n`;
  const cases = [
    // Honoured today, the body would be a second request behind a proxy that reads no body.
    [
      `POST ${reel} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length : ${smuggled.length}\r\n\r\n${smuggled}`,
      400,
      /header name/,
    ],
    [
      `POST ${reel} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
      400,
      /header name/,
    ],
    ["GET /api/v1/system/health HTTP/9.9\r\nHost: x\r\n\r\n", 505, /version/],
    ["GET /api/v1/system/health\r\nHost: x\r\n\r\n", 400, /no HTTP version/],
    [
      `POST ${reel} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        'Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      501,
      /gzip/,
    ],
    [`${upgrade}Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n\r\n`, 400, /sec-websocket-key/],
    [`GET ${reel}?limit=%zz HTTP/1.1\r\nHost: x\r\n\r\n`, 400, /"limit"/],
  ];
  for (const [request, status, pattern] of cases) {
    const reply = await rawExchange(daemon, request);
    assert.match(reply, new RegExp(`^HTTP/1\\.1 ${status} `), request);
    assert.match(reply, /\r\nConnection: close\r\n/, request);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
    assert.equal(body.error.status, status, request);
    assert.match(body.error.message, pattern, request);
    assert.doesNotMatch(reply, /"status":"ok"|HTTP\/1\.1 (101|200|202)/, request);
  }
  // Still serving, and the request that was refused published nothing.
  const res = await fetch(url(daemon, `${reel}?limit=5`));
  assert.equal(res.status, 200);
  assert.deepEqual((await res.json()).updates, []);
});

test("protobuf bodies: a ReelUpdate arrives typed", T, async () => {
  const root = await kronopProto();
  const ReelUpdate = root.lookupType("kronop.v1.ReelUpdate");
  const viewer = await joinOk(await daemon.phoenix(), "reel:321", { events: ["reel_update"] });
  const body = ReelUpdate.encode(
    ReelUpdate.create({ update_data: { views: "7" }, timestamp: 1234 }),
  ).finish();
  const res = await fetch(url(daemon, "/api/v1/reels/321/updates"), {
    method: "POST",
    headers: { "content-type": "application/x-protobuf" },
    body,
  });
  assert.equal(res.status, 202);
  const update = await viewer.queues.reel_update.next(5000);
  assert.deepEqual(update.update_data, { views: "7" });
  assert.equal(update.reel_id, 321);
  assert.equal(update.timestamp, 1234);
  const wrongReel = ReelUpdate.encode(ReelUpdate.create({ reel_id: 5, update_data: { a: "b" } }));
  await expectError(
    await fetch(url(daemon, "/api/v1/reels/321/updates"), {
      method: "POST",
      headers: { "content-type": "application/x-protobuf" },
      body: wrongReel.finish(),
    }),
    400,
    /reel_id/,
  );
  await expectError(
    await fetch(url(daemon, "/api/v1/reels/321/updates"), {
      method: "POST",
      headers: { "content-type": "application/x-protobuf" },
      body: new Uint8Array([0xff, 0xff, 0xff]),
    }),
    400,
    /not a kronop.v1.ReelUpdate/,
  );
  const Presence = root.lookupType("kronop.v1.PresenceUpdate");
  const p = await fetch(url(daemon, "/api/v1/users/pbuser/presence"), {
    method: "POST",
    headers: { "content-type": "application/x-protobuf" },
    body: Presence.encode(Presence.create({ status: 2, activity: "idle" })).finish(),
  });
  assert.equal(p.status, 200);
  assert.equal((await p.json()).status, "away");
});

test("bearer tokens: writes need one without --trust-loopback", T, async () => {
  const post = (path, body, token) =>
    fetch(url(strict, path), {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
  const update = { update_data: { views: 1 } };
  const none = await post("/api/v1/reels/1/updates", update);
  assert.match(none.headers.get("www-authenticate"), /^Bearer/);
  await expectError(none, 401, /authentication required/);
  await expectError(await post("/api/v1/reels/1/updates", update, "garbage"), 401, /invalid token/);
  const user = await strict.token("hank");
  await expectError(await post("/api/v1/reels/1/updates", update, user), 403, /admin/);
  const admin = await strict.token("backend", { admin: true });
  assert.equal((await post("/api/v1/reels/1/updates", update, admin)).status, 202);

  const status = { status: "online" };
  assert.equal((await post("/api/v1/users/hank/presence", status, user)).status, 200);
  await expectError(await post("/api/v1/users/ivy/presence", status, user), 403, /only that user/);
  assert.equal((await post("/api/v1/users/ivy/presence", status, admin)).status, 200);
  // An expired token, signed here with the daemon's secret.
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const signing = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "hank", exp: Math.floor(Date.now() / 1000) - 5 })}`;
  const secret = readFileSync(strict.secretFile, "utf8").trim();
  const expired = `${signing}.${crypto.createHmac("sha256", secret).update(signing).digest("base64url")}`;
  await expectError(await post("/api/v1/users/hank/presence", status, expired), 401, /expired/);
  // Reading a user's presence is for that user (or an admin) too.
  await expectError(await fetch(url(strict, "/api/v1/users/hank/presence")), 401, /authentication/);
  const mine = await fetch(url(strict, "/api/v1/users/hank/presence"), {
    headers: { authorization: `Bearer ${user}` },
  });
  assert.equal(mine.status, 200);
});

test("GET updates pages through the log with since_seq and limit", T, async () => {
  const p = "/api/v1/reels/900/updates";
  for (let i = 1; i <= 5; i++) {
    const r = await fetch(url(daemon, p), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ update_data: { n: i } }),
    });
    assert.equal(r.status, 202);
  }
  const seqs = async (query) =>
    (await (await fetch(url(daemon, `${p}${query}`))).json()).updates.map((u) => u.seq);
  await eventually(async () => (await seqs("")).length === 5, 3000, "five updates");
  assert.deepEqual(await seqs("?since_seq=2&limit=2"), [3, 4]);
  assert.deepEqual(await seqs("?limit=2"), [4, 5]);
  assert.deepEqual(await seqs("?since_seq=5"), []);
  await expectError(await fetch(url(daemon, `${p}?since_seq=x`)), 400, /since_seq/);
});

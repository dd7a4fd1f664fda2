// SIGHUP: kronopd reads its --config file and auth secret again, applies the limits, the
// secret and the log level at once, says what changed, and refuses a faulty file whole.
// Also: per-client faults are logged as key=value warnings, throttled.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

import { eventually, join, joinOk, startDaemon } from "./helpers.mjs";

const T = { timeout: 60000 };

function configDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kronop-reload-"));
  return { dir, conf: path.join(dir, "kronopd.conf"), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function count(text, re) {
  return (text.match(re) || []).length;
}

// Sends SIGHUP and waits for the reload's log line; returns it.
async function hup(daemon) {
  const before = count(daemon.output, /event=reload /g);
  daemon.proc.kill("SIGHUP");
  await eventually(() => count(daemon.output, /event=reload /g) > before, 5000, "the reload's log line");
  return daemon.output.split("\n").filter((l) => l.includes("event=reload ")).at(-1);
}

test("SIGHUP applies new limits and a new auth secret, and names what it changed", T, async () => {
  const { conf, cleanup } = configDir();
  writeFileSync(conf, "max-channels = 3\nlog-level = info\n");
  const daemon = await startDaemon({ extraArgs: ["--config", conf] });
  try {
    const before = await daemon.phoenix();
    for (const t of ["reel:1", "reel:2", "reel:3"]) await joinOk(before, t);
    const oldToken = await daemon.token("alice");
    assert.ok(await daemon.raw(`/ws/user/alice?token=${oldToken}`));

    writeFileSync(conf, "max-channels = 2\nlog-level = debug\n# a comment\nrings = 8\n");
    writeFileSync(daemon.secretFile, `rotated-${Date.now()}\n`, { mode: 0o600 });
    const line = await hup(daemon);
    assert.match(line, /result=applied/);
    assert.match(line, /max-channels=2/);
    assert.match(line, /log-level=debug/);
    assert.match(line, /auth-secret=replaced/);
    assert.match(line, /restart_needed=rings/); // the segment's geometry waits for a restart

    // New sockets get the new channel limit.
    const after = await daemon.phoenix();
    await joinOk(after, "reel:1");
    await joinOk(after, "reel:2");
    const third = await join(after, "reel:3");
    third.channel.leave();
    assert.deepEqual(third.response, { reason: "too many channels joined" });
    // Tokens signed with the old secret are refused now; the new secret's are accepted.
    await assert.rejects(daemon.raw(`/ws/user/alice?token=${oldToken}`, { openMs: 3000 }), /403/);
    assert.ok(await daemon.raw(`/ws/user/alice?token=${await daemon.token("alice")}`));
    // The socket that joined three before the reload keeps its channels and is served.
    await daemon.publish("reel:3", "reel_update", { views: 9 });
    const r = await joinOk(await daemon.phoenix(), "reel:1");
    assert.equal(r.status, "ok");
  } finally {
    await daemon.stop();
    cleanup();
  }
});

test("SIGHUP applies --header-timeout-ms to the sockets already open", T, async () => {
  const { conf, cleanup } = configDir();
  writeFileSync(conf, "header-timeout-ms = 60000\n");
  const daemon = await startDaemon({ extraArgs: ["--config", conf] });
  try {
    const idle = await daemon.raw("/ws/websocket?vsn=2.0.0"); // upgraded, never joins
    writeFileSync(conf, "header-timeout-ms = 1000\n");
    assert.match(await hup(daemon), /header-timeout-ms=1000/);
    const { code, reason } = await idle.waitClose(4000);
    assert.equal(code, 1008);
    assert.match(reason, /no channel joined/);
  } finally {
    await daemon.stop();
    cleanup();
  }
});

test("SIGHUP with a faulty file changes nothing and names the file's line", T, async () => {
  const { conf, cleanup } = configDir();
  writeFileSync(conf, "max-channels = 2\n");
  const daemon = await startDaemon({ extraArgs: ["--config", conf] });
  try {
    writeFileSync(conf, "max-channels = 1\nmax-message = lots\n");
    const line = await hup(daemon);
    assert.match(line, /level=error/);
    assert.match(line, /result=refused changed=none/);
    assert.ok(line.includes(`${conf}:2: --max-message`), line);

    writeFileSync(conf, "max-channels = 1\nmax_channels = 1\n");
    assert.match(await hup(daemon), /kronopd\.conf:2: unknown key 'max_channels'/);

    // Still the old limit (2), and still serving.
    const socket = await daemon.phoenix();
    await joinOk(socket, "reel:1");
    await joinOk(socket, "reel:2");
    assert.equal((await daemon.health()).code, 0);
  } finally {
    await daemon.stop();
    cleanup();
  }
});

test("client faults are logged as key=value warnings, throttled per kind", T, async () => {
  const daemon = await startDaemon({ extraArgs: ["--io-threads", "1"] });
  try {
    const faulty = async () => {
      const c = await daemon.raw("/ws/websocket?vsn=2.0.0");
      c.ws.send("this is not a phoenix message");
      const { code } = await c.waitClose(5000);
      assert.equal(code, 1003);
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 40 }, faulty));
    const seconds = Math.ceil((Date.now() - started) / 1000);
    assert.equal(Number((await daemon.clientStats()).closed_protocol), 40);
    const lines = () => daemon.output.split("\n").filter((l) => l.includes("event=client_fault kind=protocol"));
    // A burst of 10 lines, then one a second: far fewer lines than faults.
    assert.ok(lines().length >= 10 && lines().length <= 10 + seconds, `${lines().length} lines in ${seconds} s`);
    assert.match(lines()[0], /level=warning event=client_fault kind=protocol peer=127\.0\.0\.1:\d+ user=- code=1003 reason=".+" suppressed=0/);
    // The next line allowed says how many were left out.
    await new Promise((r) => setTimeout(r, 1100));
    await faulty();
    await eventually(() => /suppressed=[1-9]\d*/.test(lines().at(-1)), 3000, "a line with the suppressed count");
  } finally {
    await daemon.stop();
  }
});

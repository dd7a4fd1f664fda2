// A real redis-server for the cluster tests: Debian's, started on a free loopback port with a
// directory of its own (AOF on), and one-command RESP access to check what kronopd did there.
//
// KRONOP_REDIS_SERVER names the redis-server binary (default /usr/bin/redis-server).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { eventually, freePort, withTimeout } from "./helpers.mjs";

const REDIS_SERVER = process.env.KRONOP_REDIS_SERVER || "/usr/bin/redis-server";

// One RESP command on a fresh connection; resolves to the raw reply text.
export function redisRaw(port, args, ms = 5000) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = net.connect(port, "127.0.0.1");
      let text = "";
      sock.on("data", (b) => {
        text += b.toString("latin1");
        // Enough for the small replies asked for here: a complete last line.
        if (text.endsWith("\r\n")) {
          sock.destroy();
          resolve(text);
        }
      });
      sock.on("error", reject);
      sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));
    }),
    ms,
    `redis ${args[0]}`,
  );
}

export class Redis {
  async start() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), "kronop-redis-"));
    this.port = await freePort();
    return this.restart();
  }
  // Started again on the same port and directory (AOF on: what it had is kept).
  async restart() {
    this.proc = spawn(
      REDIS_SERVER,
      ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", "",
        "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--logfile", ""],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    await eventually(
      async () => (await redisRaw(this.port, ["PING"]).catch(() => "")) === "+PONG\r\n",
      10000,
      "redis-server to answer PING",
      50,
    );
    return this;
  }
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  // SIGTERM: Redis writes its AOF and exits.
  async pause() {
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await exited;
  }
  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}


// Stops every node, then Redis; each node must have exited cleanly (a sanitizer's report,
// TSan's or ASan's, would make its exit status non-zero).
export async function stopCluster(nodes, redis) {
  const exits = [];
  for (const d of nodes) exits.push(await d.stop());
  if (redis) await redis.stop();
  for (const [i, e] of exits.entries()) {
    assert.deepEqual(e, { code: 0, signal: null }, `node ${i}: ${nodes[i].tail()}`);
  }
}

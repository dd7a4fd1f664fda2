// A real redis-server for the cluster tests: Debian's, started on a free loopback port with a
// directory of its own (AOF on), and one-command RESP access to check what kronopd did there.
// RedisCluster: a real Redis Cluster of N masters, for sharded pub/sub (SPUBLISH/SSUBSCRIBE).
//
// KRONOP_REDIS_SERVER names the redis-server binary (default /usr/bin/redis-server).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
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


// The RESP2 value that starts at text[at], and where the next one starts: [value, next], or
// null while bytes are missing. A status is a string, an error an Error, nil null. `text` is
// latin1 (one char per byte), so bulk lengths count chars.
function readResp(text, at = 0) {
  const eol = text.indexOf("\r\n", at);
  if (eol < 0) return null;
  const line = text.slice(at + 1, eol);
  const next = eol + 2;
  switch (text[at]) {
    case "+":
      return [line, next];
    case "-":
      return [new Error(line), next];
    case ":":
      return [Number(line), next];
    case "$": {
      const n = Number(line);
      if (n < 0) return [null, next];
      return text.length < next + n + 2 ? null : [text.slice(next, next + n), next + n + 2];
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return [null, next];
      const items = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const r = readResp(text, pos);
        if (r === null) return null;
        items.push(r[0]);
        pos = r[1];
      }
      return [items, pos];
    }
    default:
      throw new Error(`not RESP: ${JSON.stringify(text.slice(at, at + 40))}`);
  }
}

// One command on a fresh connection; resolves to its reply read whole (readResp's values),
// where redisRaw gives the first bytes that end a line.
export function redisCommand(port, args, ms = 5000) {
  let sock;
  return withTimeout(
    new Promise((resolve, reject) => {
      sock = net.connect(port, "127.0.0.1");
      let text = "";
      sock.on("data", (b) => {
        text += b.toString("latin1");
        let r;
        try {
          r = readResp(text);
        } catch (e) {
          reject(e);
          return;
        }
        if (r !== null) resolve(r[0]);
      });
      sock.on("error", reject);
      sock.on("close", () => reject(new Error(`redis ${args[0]}: connection closed`)));
      sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));
    }),
    ms,
    `redis ${args[0]}`,
  ).finally(() => sock.destroy());
}

const CLUSTER_SLOTS = 16384;

// A Redis Cluster of `n` masters (no replicas), each a redis-server with a directory and ports
// of its own; joined as redis-cli --cluster create would, without it: each master takes an
// even, contiguous share of the slots (CLUSTER ADDSLOTSRANGE, Redis 7) and a config epoch of
// its own, then the first meets the others. Up once every node says cluster_state:ok and
// lists n ranges in CLUSTER SLOTS (a Redis 7 master says ok 2 s after it started at the
// earliest). The cluster bus is on a second free port (--cluster-port): the default, the
// port plus 10000, may be taken or above 65535.
export class RedisCluster {
  async start(n = 3) {
    this.root = mkdtempSync(path.join(os.tmpdir(), "kronop-redis-cluster-"));
    this.nodes = [];
    try {
      const taken = new Set();
      const port = async () => {
        for (;;) {
          const p = await freePort();
          if (!taken.has(p)) {
            taken.add(p);
            return p;
          }
        }
      };
      for (let i = 0; i < n; i++) {
        const dir = path.join(this.root, String(i));
        mkdirSync(dir);
        const node = {
          dir,
          port: await port(),
          busPort: await port(),
          first: Math.floor((i * CLUSTER_SLOTS) / n),
          last: Math.floor(((i + 1) * CLUSTER_SLOTS) / n) - 1,
        };
        node.proc = spawn(
          REDIS_SERVER,
          ["--port", String(node.port), "--cluster-port", String(node.busPort), "--bind", "127.0.0.1",
            "--dir", dir, "--logfile", path.join(dir, "redis.log"), "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--save", "",
            "--appendonly", "no", "--daemonize", "no"],
          { stdio: "ignore" },
        );
        this.nodes.push(node);
      }
      for (const node of this.nodes) {
        await eventually(
          async () => (await redisRaw(node.port, ["PING"]).catch(() => "")) === "+PONG\r\n",
          10000,
          `redis-server on port ${node.port} to answer PING`,
          50,
        );
      }
      const ok = async (node, args) => {
        const answer = await redisRaw(node.port, args);
        assert.equal(answer, "+OK\r\n", `${args.join(" ")} on port ${node.port}`);
      };
      for (const [i, node] of this.nodes.entries()) {
        await ok(node, ["CLUSTER", "SET-CONFIG-EPOCH", String(i + 1)]);
        await ok(node, ["CLUSTER", "ADDSLOTSRANGE", String(node.first), String(node.last)]);
      }
      for (const node of this.nodes.slice(1)) {
        await ok(this.nodes[0], ["CLUSTER", "MEET", "127.0.0.1", String(node.port), String(node.busPort)]);
      }
      await eventually(
        async () => {
          for (const node of this.nodes) {
            const info = await redisCommand(node.port, ["CLUSTER", "INFO"]).catch(() => "");
            if (typeof info !== "string" || !info.includes("cluster_state:ok\r\n")) return false;
            const slots = await redisCommand(node.port, ["CLUSTER", "SLOTS"]).catch(() => null);
            if (!Array.isArray(slots) || slots.length !== n) return false;
          }
          return true;
        },
        15000,
        "every node of the Redis Cluster to say cluster_state:ok",
        50,
      );
    } catch (e) {
      await this.stop();
      throw e;
    }
    return this;
  }
  get ports() {
    return this.nodes.map((node) => node.port);
  }
  get urls() {
    return this.nodes.map((node) => `redis://127.0.0.1:${node.port}`);
  }
  // Kills every node and removes their directories.
  async stop() {
    for (const node of this.nodes ?? []) {
      if (node.proc.exitCode === null && node.proc.signalCode === null) {
        const exited = new Promise((r) => node.proc.once("exit", r));
        node.proc.kill("SIGKILL");
        await exited;
      }
    }
    if (this.root) rmSync(this.root, { recursive: true, force: true });
  }
}

// The masters' slot ranges as the node on `port` lists them (CLUSTER SLOTS):
// [{ first, last, host, port, id }], where an endpoint Redis leaves empty or nil is 127.0.0.1.
export async function clusterSlots(port) {
  const ranges = await redisCommand(port, ["CLUSTER", "SLOTS"]);
  if (!Array.isArray(ranges)) throw new Error(`CLUSTER SLOTS answered ${ranges}`);
  return ranges.map(([first, last, [host, masterPort, id]]) => ({
    first, last, host: host || "127.0.0.1", port: masterPort, id,
  }));
}

// The slot of `key` as the node on `port` computes it (CLUSTER KEYSLOT), and the port of the
// master serving it there.
export async function clusterKeySlotOwner(port, key) {
  const slot = await redisCommand(port, ["CLUSTER", "KEYSLOT", key]);
  const owner = (await clusterSlots(port)).find((r) => r.first <= slot && slot <= r.last);
  return { slot, port: owner ? owner.port : null };
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

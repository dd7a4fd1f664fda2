// Shared helpers for the real-client tests: start and stop a real kronopd, publish with
// kronopctl, open official phoenix clients and raw `ws` sockets, and wait for things with
// timeouts so that a missing message fails the test instead of hanging it.
//
// The binaries come from the environment (ctest sets them all):
//   KRONOPD_BIN=/path/to/kronopd KRONOPCTL_BIN=/path/to/kronopctl \
//   KRONOP_C_PUBLISH_BIN=/path/to/c_publish node --test
// (c_publish is tests/clients/tools/c_publish.c: a producer that uses only the C ABI). The
// .proto files are read from KRONOP_PROTO_DIR, by default the repository's proto/.
// KRONOP_TEST_DEBUG=1 prints the phoenix client's log and the daemon's output.

import { execFile, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Socket } from "phoenix";
import protobuf from "protobufjs";
import WebSocket from "ws";

export { Socket, WebSocket };

const DEBUG = Boolean(process.env.KRONOP_TEST_DEBUG);

// ---------------------------------------------------------------------------------------
// Waiting

// Resolves or rejects like `promise`, or rejects after `ms` with "timed out after ... waiting
// for <what>". The timer is cleared either way so it does not keep the process alive.
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls `cond` (sync or async) every `intervalMs` until it is truthy; throws after `ms`.
export async function eventually(cond, ms, what, intervalMs = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    // A check that never settles (a request to a daemon that stopped answering) fails at
    // the deadline too.
    const left = Math.max(deadline - Date.now(), intervalMs);
    if (await withTimeout(Promise.resolve(cond()), left, what)) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// A FIFO of received items. next() takes the oldest one, or waits for the next to arrive,
// at most `ms`.
export class Queue {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }

  get length() {
    return this.items.length;
  }

  next(ms = 5000, what = this.name) {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      this.waiters.push(waiter);
    });
    return withTimeout(p, ms, what).catch((err) => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
      throw err;
    });
  }
}

// ---------------------------------------------------------------------------------------
// Binaries, ports, names

function requireBinary(envName) {
  const file = process.env[envName];
  if (!file) {
    throw new Error(
      `${envName} is not set: run these tests through ctest (test 'clients_node'), or as ` +
        "KRONOPD_BIN=/abs/build/kronopd/kronopd KRONOPCTL_BIN=/abs/build/kronopctl/kronopctl " +
        "node --test",
    );
  }
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new Error(`${envName}=${file} is not an executable file (build it first)`);
  }
  return file;
}

export function kronopdBin() {
  return requireBinary("KRONOPD_BIN");
}

export function kronopctlBin() {
  return requireBinary("KRONOPCTL_BIN");
}

export function cPublishBin() {
  return requireBinary("KRONOP_C_PUBLISH_BIN");
}

// The kronop.v1 schema (protobufjs Root) with proto field names kept (reel_update, not
// reelUpdate), as the daemon's JSON uses them.
export async function kronopProto() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dir = process.env.KRONOP_PROTO_DIR ?? path.resolve(here, "../../proto");
  const root = new protobuf.Root();
  // Imports are written from the proto root ("kronop/v1/reel.proto").
  root.resolvePath = (_origin, target) => path.join(dir, target);
  await root.load("kronop/v1/envelope.proto", { keepCase: true });
  return root;
}

// A TCP port that was free a moment ago on 127.0.0.1.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let nameCounter = 0;
export function uniqueShmName() {
  nameCounter += 1;
  return `kronop-node-${process.pid}-${nameCounter}`;
}

// Runs a program; resolves to { code, signal, stdout, stderr } (never rejects on a non-zero
// exit), killing it after `timeoutMs`. `input` (a string or Buffer), when given, is written
// to its stdin; otherwise its stdin is closed at once.
export function run(file, args, timeoutMs = 10000, input = undefined) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number" && !err.signal) {
          reject(err);
          return;
        }
        resolve({
          code: err ? (typeof err.code === "number" ? err.code : null) : 0,
          signal: err ? (err.signal ?? null) : null,
          stdout: String(stdout),
          stderr: String(stderr),
        });
      },
    );
    child.stdin.end(input);
  });
}

// ---------------------------------------------------------------------------------------
// The daemon

const liveDaemons = new Set();

// Last resort: a test file that dies without running its `after` hook must not leave a
// daemon or a shared-memory segment behind.
process.on("exit", () => {
  for (const d of liveDaemons) {
    try {
      d.proc.kill("SIGKILL");
    } catch {
      // already gone
    }
    rmSync(`/dev/shm/${d.shmName}`, { force: true });
    rmSync(d.dir, { recursive: true, force: true });
  }
});

export class Daemon {
  constructor({ proc, port, shmName, dir, controlSocket, args, secretFile }) {
    this.secretFile = secretFile;
    this.port = port;
    this.shmName = shmName;
    this.dir = dir;
    this.controlSocket = controlSocket;
    this.args = args;
    this.output = "";
    this.resources = new Set(); // sockets opened through this daemon, closed by stop()
    this.attach(proc);
  }

  attach(proc) {
    this.proc = proc;
    this.exit = null; // { code, signal } once exited
    this.exited = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    proc.stdout.on("data", (b) => this.appendOutput(b));
    proc.stderr.on("data", (b) => this.appendOutput(b));
  }

  // Stops the daemon with `signal` (SIGKILL: a crash) and starts it again with the same
  // arguments: same port, segment, data directory and control socket, as systemd's
  // Restart= would. Clients are left open: they see the socket close and reconnect on
  // their own. Resolves once `kronopctl stats` answers and the port accepts connections.
  // `exitMs`: how long the old one may take to exit (a SIGTERM drain takes up to --drain-ms).
  async restart({ signal = "SIGKILL", readyMs = 15000, exitMs = 10000 } = {}) {
    if (!this.exit) {
      this.proc.kill(signal);
      await withTimeout(this.exited, exitMs, `kronopd to exit after ${signal}`);
    }
    this.proc.stdout.destroy();
    this.proc.stderr.destroy();
    this.attach(spawn(kronopdBin(), this.args, { stdio: ["ignore", "pipe", "pipe"] }));
    const deadline = Date.now() + readyMs;
    for (;;) {
      this.assertAlive();
      const r = await run(kronopctlBin(), ["--socket", this.controlSocket, "stats"], 5000);
      if (r.code === 0 && (await canConnect(this.port))) return;
      if (Date.now() >= deadline) {
        throw new Error(`kronopd did not come back within ${readyMs} ms:\n${this.tail()}`);
      }
      await sleep(50);
    }
  }

  appendOutput(b) {
    const s = b.toString("utf8");
    if (DEBUG) process.stderr.write(`[kronopd ${this.port}] ${s}`);
    this.output += s;
    if (this.output.length > 64 * 1024) this.output = this.output.slice(-32 * 1024);
  }

  // The daemon's last output lines, for error messages.
  tail(lines = 20) {
    const all = this.output.trimEnd().split("\n");
    return all.slice(-lines).join("\n");
  }

  get url() {
    return `ws://127.0.0.1:${this.port}`;
  }

  describeExit() {
    if (!this.exit) return "still running";
    return this.exit.signal ? `killed by ${this.exit.signal}` : `exit code ${this.exit.code}`;
  }

  // Throws a clear error when the daemon is no longer running.
  assertAlive() {
    if (this.exit) {
      throw new Error(`kronopd died (${this.describeExit()}); its output:\n${this.tail()}`);
    }
  }

  // The "clients" part of `kronopctl --json stats` (64-bit counters as decimal strings).
  async clientStats() {
    const r = await run(kronopctlBin(), ["--socket", this.controlSocket, "--json", "stats"]);
    if (r.code !== 0) throw new Error(`kronopctl stats failed: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout).clients;
  }

  async health() {
    return run(kronopctlBin(), ["--socket", this.controlSocket, "health"], 5000);
  }

  // `kronopctl --shm-name NAME publish --topic T --event E --json J`; resolves to the
  // run() result whatever the exit code.
  publishRaw(topic, event, payload) {
    const json = typeof payload === "string" ? payload : JSON.stringify(payload);
    return run(kronopctlBin(), [
      "--shm-name", this.shmName,
      "publish", "--topic", topic, "--event", event, "--json", json,
    ]);
  }

  // Same, and throws unless kronopctl exits 0.
  async publish(topic, event, payload) {
    const r = await this.publishRaw(topic, event, payload);
    if (r.code !== 0) {
      throw new Error(
        `kronopctl publish ${topic} ${event} failed (${r.signal ?? `exit ${r.code}`}): ` +
          `${r.stderr.trim()}`,
      );
    }
    return r;
  }

  // Publishes through the C ABI (c_publish): a JSON payload with kronop_publish_wait, or,
  // with `envelope` (Buffer/Uint8Array), a serialized Envelope with kronop_publish_envelope.
  // Resolves to { producerId, seq } (BigInt strings as printed); throws unless it exits 0.
  async publishC(topic, event, payload) {
    const json = typeof payload === "string" ? payload : JSON.stringify(payload);
    return this.checkC(
      await run(cPublishBin(), [this.shmName, "json", topic, event], 10000, json),
      `${topic} ${event}`,
    );
  }

  async publishEnvelopeC(envelope) {
    return this.checkC(
      await run(cPublishBin(), [this.shmName, "envelope"], 10000, Buffer.from(envelope)),
      "an envelope",
    );
  }

  checkC(r, what) {
    if (r.code !== 0) {
      throw new Error(
        `c_publish ${what} failed (${r.signal ?? `exit ${r.code}`}): ${r.stderr.trim()}`,
      );
    }
    const m = /producer_id=(\d+) seq=(\d+)/.exec(r.stdout);
    if (!m) throw new Error(`c_publish printed no producer_id/seq: ${r.stdout}`);
    return { producerId: m[1], seq: m[2] };
  }

  // A token for `user` from `kronopctl token` (the daemon's secret).
  async token(user, { admin = false, ttl = "1h" } = {}) {
    const args = ["token", "--user", user, "--ttl", ttl, "--secret-file", this.secretFile];
    if (admin) args.push("--admin");
    const r = await run(kronopctlBin(), args);
    if (r.code !== 0) throw new Error(`kronopctl token failed: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  track(resource) {
    this.resources.add(resource);
    return resource;
  }

  // A connected official phoenix client (see connectPhoenix).
  async phoenix(opts = {}) {
    return this.track(await connectPhoenix(this, opts));
  }

  // An open raw `ws` socket to PATH on this daemon (see openRaw).
  async raw(urlPath, opts = {}) {
    const client = openRaw(`${this.url}${urlPath}`, opts);
    this.track(client);
    return client.opened;
  }

  async closeClients() {
    const all = [...this.resources];
    this.resources.clear();
    await Promise.all(all.map((r) => r.close().catch(() => {})));
  }

  // Closes the clients, sends SIGTERM and waits (at most `ms`) for the exit; SIGKILL after
  // that. Removes the segment and the temporary directory. Resolves to { code, signal }.
  // Safe to call twice.
  async stop(ms = 10000) {
    await this.closeClients();
    if (!this.exit) {
      this.proc.kill("SIGTERM");
      try {
        await withTimeout(this.exited, ms, `kronopd (pid ${this.proc.pid}) to exit after SIGTERM`);
      } catch (err) {
        this.proc.kill("SIGKILL");
        await this.exited;
        this.cleanupFiles();
        throw new Error(`${err.message}; killed it. Its output:\n${this.tail()}`);
      }
    }
    this.cleanupFiles();
    return this.exit;
  }

  cleanupFiles() {
    liveDaemons.delete(this);
    // A child of the daemon that outlives it could hold these pipes open and keep the test
    // process alive.
    this.proc.stdout.destroy();
    this.proc.stderr.destroy();
    rmSync(`/dev/shm/${this.shmName}`, { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Starts kronopd on a free port with its own segment, data directory and control socket,
// and waits until `kronopctl health` succeeds and the port accepts connections.
// `extraArgs` are appended (e.g. ["--idle-timeout-ms", "1000"]). Another process may take
// the free port before kronopd binds it: that case is retried with a new port.
export async function startDaemon(opts = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDaemonOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(err.message)) throw err;
    }
  }
}

async function startDaemonOnce({ extraArgs = [], readyMs = 15000 } = {}) {
  const bin = kronopdBin();
  kronopctlBin();
  const dir = mkdtempSync(path.join(os.tmpdir(), "kronop-node-"));
  const shmName = uniqueShmName();
  const controlSocket = path.join(dir, "kronopd.sock");
  // Every test daemon can verify tokens; daemon.token() mints them with `kronopctl token`.
  const secretFile = path.join(dir, "auth-secret");
  writeFileSync(secretFile, `test-secret-${process.pid}-${Date.now()}\n`, { mode: 0o600 });
  const port = await freePort();
  const args = [
    "--port", String(port),
    "--bind", "127.0.0.1",
    "--data-dir", path.join(dir, "data"),
    "--shm-name", shmName,
    "--control-socket", controlSocket,
    "--auth-secret-file", secretFile,
    ...extraArgs,
  ];
  rmSync(`/dev/shm/${shmName}`, { force: true });
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let spawnError = null;
  proc.once("error", (err) => {
    spawnError = err;
  });
  const daemon = new Daemon({ proc, port, shmName, dir, controlSocket, args, secretFile });
  liveDaemons.add(daemon);

  const fail = async (why) => {
    if (!daemon.exit && !spawnError) {
      proc.kill("SIGKILL");
      await withTimeout(daemon.exited, 5000, "kronopd to die after SIGKILL").catch(() => {});
    }
    daemon.cleanupFiles();
    throw new Error(
      `kronopd did not start: ${why}\n  command: ${bin} ${args.join(" ")}\n` +
        `  its output:\n${daemon.tail() || "(none)"}`,
    );
  };

  const deadline = Date.now() + readyMs;
  let last = null;
  for (;;) {
    await sleep(0); // lets a spawn error or an early exit be reported first
    if (spawnError) return fail(`cannot run it: ${spawnError.message}`);
    if (daemon.exit) return fail(`it exited early (${daemon.describeExit()})`);
    last = await daemon.health();
    if (last.code === 0) break;
    if (daemon.exit) return fail(`it exited early (${daemon.describeExit()})`);
    if (Date.now() >= deadline) {
      return fail(
        `'kronopctl health' still fails after ${readyMs} ms: ` +
          `${(last.stderr || last.stdout).trim()}`,
      );
    }
    await sleep(50);
  }

  // Healthy means listening (the contract); check it so that a daemon without a client
  // server fails here with a clear message rather than as a client timeout later.
  try {
    await eventually(() => canConnect(port), 2000, `127.0.0.1:${port} to accept connections`);
  } catch {
    return fail(`'kronopctl health' succeeds but nothing accepts connections on 127.0.0.1:${port}`);
  }
  return daemon;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    s.setTimeout(1000);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

// ---------------------------------------------------------------------------------------
// The official phoenix client

// A connected phoenix Socket to ws://127.0.0.1:PORT/ws (Node needs `transport: WebSocket`,
// the `ws` package; everything else is the client as shipped). Extra fields:
//   socket.closes  - a Queue of the socket's close events
//   socket.errors  - the socket's error events
//   socket.frames  - every decoded message the socket received ({topic, event, payload, ref})
//   socket.close() - disconnect (stops reconnects and heartbeats); resolves when done
export async function connectPhoenix(daemon, opts = {}) {
  const { openMs = 5000, ...socketOpts } = opts;
  const socket = new Socket(`${daemon.url}/ws`, {
    transport: WebSocket,
    logger: DEBUG ? (kind, msg, data) => console.error(`[phx ${kind}] ${msg}`, data) : undefined,
    ...socketOpts,
  });
  socket.closes = new Queue("phoenix socket close");
  socket.errors = [];
  socket.frames = [];
  socket.close = () =>
    new Promise((resolve) => {
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          resolve();
        }
      };
      socket.disconnect(finish, 1000, "test done");
      setTimeout(finish, 2000).unref();
    });
  socket.onClose((event) => socket.closes.push(event));
  socket.onError((event) => socket.errors.push(event));
  socket.onMessage((msg) => socket.frames.push(msg));

  const opened = new Promise((resolve) => socket.onOpen(resolve));
  socket.connect();
  try {
    await withTimeout(opened, openMs, `the phoenix socket to open on ${daemon.url}/ws`);
  } catch (err) {
    await socket.close();
    const last = socket.errors.at(-1);
    const detail = last ? `; last socket error: ${describeError(last)}` : "";
    daemon.assertAlive();
    throw new Error(`${err.message}${detail}`);
  }
  return socket;
}

function describeError(e) {
  return e?.message || e?.error?.message || e?.type || String(e);
}

// A push on a joined channel: resolves to { status: "ok" | "error", r } with the reply's
// payload, or { status: "timeout" }.
export function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel
      .push(event, payload)
      .receive("ok", (r) => resolve({ status: "ok", r }))
      .receive("error", (r) => resolve({ status: "error", r }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

// Joins `topic` on `socket`. Resolves to { status: "ok" | "error", response, channel } with
// the join reply; rejects when no reply comes within `ms`. `events` are bound (before the
// join, so nothing is missed) to Queues returned as `queues[event]`.
export async function join(socket, topic, { params = {}, events = [], ms = 5000 } = {}) {
  const channel = socket.channel(topic, params);
  const queues = {};
  for (const ev of events) {
    queues[ev] = new Queue(`'${ev}' on ${topic}`);
    channel.on(ev, (payload) => queues[ev].push(payload));
  }
  const reply = new Promise((resolve) => {
    channel
      .join(ms)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }));
  });
  let r;
  try {
    r = await withTimeout(reply, ms + 1000, `the join reply for ${topic}`);
  } catch (err) {
    channel.leave();
    throw err;
  }
  if (r.status === "timeout") {
    channel.leave();
    throw new Error(`no reply to the join of ${topic} within ${ms} ms (phoenix push timeout)`);
  }
  return { ...r, channel, queues };
}

// Joins and insists on an ok reply.
export async function joinOk(socket, topic, opts = {}) {
  const r = await join(socket, topic, opts);
  if (r.status !== "ok") {
    r.channel.leave(); // an errored channel would otherwise rejoin on its own
    throw new Error(`join ${topic} was refused: ${JSON.stringify(r.response)}`);
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Raw `ws` sockets

// Opens a raw `ws` WebSocket to `url`. Returns a client object whose `opened` promise
// resolves (to the client) once open, or rejects within `openMs`:
//   client.ws        - the ws WebSocket
//   client.messages  - a Queue of { text, data, isBinary }
//   client.closed    - resolves to { code, reason } on close
//   client.waitClose(ms) - the same, or rejects after ms
//   client.close()   - close it (terminate after 1 s); resolves when closed
export function openRaw(url, { openMs = 5000, wsOptions = {} } = {}) {
  const ws = new WebSocket(url, wsOptions);
  const client = {
    ws,
    url,
    messages: new Queue(`a message on ${url}`),
    errors: [],
  };
  ws.on("message", (data, isBinary) =>
    client.messages.push({ data, isBinary, text: isBinary ? null : data.toString("utf8") }),
  );
  ws.on("error", (err) => client.errors.push(err));
  client.closed = new Promise((resolve) => {
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
  });
  client.waitClose = (ms) => withTimeout(client.closed, ms, `${url} to be closed by the server`);
  client.close = async () => {
    if (ws.readyState === WebSocket.CLOSED) return;
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    else ws.terminate();
    try {
      await withTimeout(client.closed, 1000, "close");
    } catch {
      ws.terminate();
      await client.closed;
    }
  };
  const open = new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  client.opened = withTimeout(open, openMs, `WebSocket ${url} to open`).then(
    () => client,
    async (err) => {
      ws.terminate();
      throw new Error(`cannot open ${url}: ${err.message}`);
    },
  );
  return client;
}

// ---------------------------------------------------------------------------------------
// Raw TCP (for frames `ws` will not send, e.g. unmasked ones)

export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// A TCP connection with a byte buffer: readUntil(predicate-on-buffer) waits for enough bytes.
export class RawConnection {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.ended = false;
    this.waiters = new Set();
    this.closed = new Promise((resolve) => sock.once("close", resolve));
    sock.on("data", (b) => {
      this.buf = Buffer.concat([this.buf, b]);
      this.wake();
    });
    sock.on("end", () => {
      this.ended = true;
      this.wake();
    });
    sock.on("close", () => {
      this.ended = true;
      this.wake();
    });
    sock.on("error", () => {});
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  // Waits until `take(buf)` returns a non-null { value, used }, consumes `used` bytes and
  // resolves to `value`. Rejects after `ms`, or when the peer closes before that.
  readUntil(take, ms, what) {
    let check;
    const p = new Promise((resolve, reject) => {
      check = () => {
        const r = take(this.buf);
        if (r) {
          this.buf = this.buf.subarray(r.used);
          this.waiters.delete(check);
          resolve(r.value);
        } else if (this.ended) {
          this.waiters.delete(check);
          reject(new Error(`connection closed while waiting for ${what}`));
        }
      };
      this.waiters.add(check);
      check();
    });
    return withTimeout(p, ms, what).finally(() => this.waiters.delete(check));
  }

  write(bytes) {
    this.sock.write(bytes);
  }

  destroy() {
    this.sock.destroy();
  }
}

export function connectTcp(port, ms = 5000) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = net.connect({ port, host: "127.0.0.1" });
      sock.once("connect", () => resolve(new RawConnection(sock)));
      sock.once("error", reject);
    }),
    ms,
    `a TCP connection to 127.0.0.1:${port}`,
  );
}

// Reads an HTTP response head: resolves to { statusLine, status, headers (lower-case) }.
export function readHttpHead(conn, ms = 5000) {
  return conn.readUntil(
    (buf) => {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return null;
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const headers = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(":");
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const status = Number(lines[0].split(" ")[1]);
      return { value: { statusLine: lines[0], status, headers }, used: end + 4 };
    },
    ms,
    "the HTTP response head",
  );
}

// Reads one WebSocket frame: resolves to { fin, rsv, opcode, masked, payload }.
export function readFrame(conn, ms = 5000) {
  return conn.readUntil(
    (buf) => {
      if (buf.length < 2) return null;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return null;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return null;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      let mask = null;
      if (masked) {
        if (buf.length < off + 4) return null;
        mask = buf.subarray(off, off + 4);
        off += 4;
      }
      if (buf.length < off + len) return null;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      return {
        value: {
          first: buf[0],
          fin: (buf[0] & 0x80) !== 0,
          rsv: (buf[0] >> 4) & 0x7,
          opcode: buf[0] & 0x0f,
          masked,
          payload,
        },
        used: off + len,
      };
    },
    ms,
    "a WebSocket frame from the server",
  );
}

// Encodes a client frame; `mask` null sends it unmasked (a protocol violation on purpose).
export function encodeFrame(opcode, payload, { mask = randomMask(), fin = true } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  const head = [(fin ? 0x80 : 0) | opcode];
  const maskBit = mask ? 0x80 : 0;
  if (data.length < 126) {
    head.push(maskBit | data.length);
  } else if (data.length < 65536) {
    head.push(maskBit | 126, data.length >> 8, data.length & 0xff);
  } else {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(data.length));
    head.push(maskBit | 127, ...b);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), data]);
  const body = Buffer.from(data);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([Buffer.from(head), Buffer.from(mask), body]);
}

function randomMask() {
  return Buffer.from([0, 0, 0, 0].map(() => Math.floor(Math.random() * 256)));
}

// A client worker of the soak test (bench/soak): a child process of soak_driver.mjs holding
// its share of the Phoenix connections, with the official phoenix client.
//
// Well-behaved clients: one socket, one channel on its topic, whose join params are a
// function ({last_seq, epoch} from what it last received), as the README shows. Every
// message's seq must follow the last one; a rejoin must recover what was missed or say
// {"recovered": false}. Anything else is a violation, kept with an example.
// Slow clients: raw `ws` sockets that join some busy topics and stop reading.
// Churn: some well-behaved clients disconnect and reconnect every 100 ms.
// Witnesses: a few clients keep every (seq, producer id, n) they receive, for the driver to
// compare with the durable log.
//
// Talks to the driver over the fork IPC channel: "start" (the plan), "churn" (how many),
// "report" (counters, and with final: true each client's last seq and the witnesses).
import { Socket, WebSocket } from "../tests/clients/helpers.mjs";

const clients = [];
const slow = [];
const examples = [];
let churnPerTick = 0;
let plan = null;
const counters = {
  joins: 0,
  rejoins_recovered: 0,
  told_not_recovered: 0,
  join_errors: 0,
  received: 0,
  gaps: 0,
  duplicates: 0,
  socket_closes: 0,
  churned: 0,
  slow_opened: 0,
};

function violation(kind, text) {
  counters[kind] += 1;
  if (examples.length < 20) examples.push(`${kind}: ${text}`);
}

function startClient(spec) {
  const c = { spec, last: undefined, epoch: undefined, told: 0, witness: spec.witness ? [] : null };
  const socket = new Socket(`${plan.url}/ws`, { transport: WebSocket });
  c.socket = socket;
  socket.onClose(() => (counters.socket_closes += 1));
  socket.onError(() => {});
  const params = () => (c.last === undefined ? {} : { last_seq: c.last, epoch: c.epoch });
  const channel = socket.channel(spec.topic, params);
  channel.on("reel_update", (payload) => {
    counters.received += 1;
    const seq = payload.seq;
    if (c.last === undefined) {
      violation("gaps", `${spec.topic}: seq ${seq} before any join reply`);
    } else if (seq === c.last + 1) {
      // in order
    } else if (seq <= c.last) {
      violation("duplicates", `${spec.topic}: seq ${seq} after ${c.last}`);
    } else {
      violation("gaps", `${spec.topic}: seq ${seq} after ${c.last}`);
    }
    if (c.last === undefined || seq > c.last) c.last = seq;
    if (c.witness) c.witness.push(c.epoch, seq, payload.w, payload.n);
  });
  channel
    .join()
    .receive("ok", (reply) => {
      counters.joins += 1;
      // A stream nobody published to may be forgotten and start again under a new epoch;
      // a client that has seen nothing of it (last_seq 0) has missed nothing.
      if (c.last > 0 && reply.epoch !== c.epoch && reply.recovered !== false) {
        violation("gaps", `${spec.topic}: epoch ${c.epoch} became ${reply.epoch} silently`);
      }
      c.epoch = reply.epoch;
      if (reply.recovered === false) {
        counters.told_not_recovered += 1;
        c.told += 1;
        c.last = reply.last_seq;
      } else if (reply.recovered === true) {
        counters.rejoins_recovered += 1;
      } else if (c.last === undefined) {
        c.last = reply.last_seq;
      } else {
        violation("gaps", `${spec.topic}: a rejoin after seq ${c.last} said nothing of recovery`);
      }
    })
    .receive("error", (reply) => {
      counters.join_errors += 1;
      if (examples.length < 20) examples.push(`join_errors: ${spec.topic}: ${JSON.stringify(reply)}`);
    });
  socket.connect();
  clients.push(c);
}

// A slow consumer: joins its topics, then never reads again, though it sends heartbeats (so
// that it is closed for being slow, 1013, not for being idle). Replaced every 60 s, so that
// the population stays the same whether or not the server closed it (the server's
// closed_slow counter says how many it closed).
function startSlow(spec) {
  const ws = new WebSocket(`${plan.url}/ws/websocket?vsn=2.0.0`);
  const s = { spec, ws };
  ws.on("error", () => {});
  ws.on("open", () => {
    counters.slow_opened += 1;
    spec.topics.forEach((topic, i) => ws.send(JSON.stringify([`${i}`, `${i}`, topic, "phx_join", {}])));
    setTimeout(() => ws._socket?.pause(), 200);
    s.heartbeat = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify([null, "hb", "phoenix", "heartbeat", {}]));
    }, 20000);
  });
  slow.push(s);
}

function replaceSlow() {
  const old = slow.splice(0, slow.length);
  for (const s of old) {
    clearInterval(s.heartbeat);
    s.ws.terminate();
    startSlow(s.spec);
  }
}

function churnTick() {
  if (churnPerTick <= 0 || clients.length === 0) return;
  for (let i = 0; i < churnPerTick; i++) {
    const c = clients[Math.floor(Math.random() * clients.length)];
    if (!c.socket.isConnected()) continue;
    counters.churned += 1;
    c.socket.disconnect(() => {
      setTimeout(() => c.socket.connect(), Math.floor(Math.random() * 500));
    });
  }
}

function finalState() {
  const last = {};
  const witnesses = {};
  for (const c of clients) {
    (last[c.spec.topic] ??= []).push(c.last ?? null);
    if (c.witness) witnesses[c.spec.topic] = { epoch: c.epoch, told: c.told, flat: c.witness };
  }
  return { last, witnesses, connected: clients.filter((c) => c.socket.isConnected()).length };
}

// A driver that died takes its workers with it.
process.on("disconnect", () => process.exit(1));

process.on("message", async (msg) => {
  if (msg.cmd === "start") {
    plan = msg;
    // Open the connections at plan.connectRate a second, so that the server's accept
    // backlog is not the test.
    const all = plan.clients;
    const perTick = Math.max(1, Math.round(plan.connectRate / 20));
    for (let i = 0; i < all.length; i += perTick) {
      for (const spec of all.slice(i, i + perTick)) startClient(spec);
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const spec of plan.slow) startSlow(spec);
    setInterval(churnTick, 100);
    setInterval(replaceSlow, 60000);
  } else if (msg.cmd === "churn") {
    churnPerTick = msg.perTick;
  } else if (msg.cmd === "report") {
    const joined = clients.filter((c) => c.last !== undefined && c.socket.isConnected()).length;
    const heap = process.memoryUsage().heapUsed;
    const reply = { cmd: "report", counters, examples, clients: clients.length, joined, heap };
    if (msg.final) Object.assign(reply, finalState());
    process.send(reply);
  } else if (msg.cmd === "exit") {
    for (const c of clients) c.socket.disconnect();
    for (const s of slow) s.ws.terminate();
    setTimeout(() => process.exit(0), 500);
  }
});

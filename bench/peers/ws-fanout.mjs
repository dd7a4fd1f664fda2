// A Node `ws` fan-out server: the peer kronop-bench compares kronopd with (bench/RESULTS.md).
// The canonical broadcast of the ws package's README, nothing tuned:
//   GET  /sub/:id  WebSocket; the socket receives every message published on :id
//   POST /pub/:id  the body (a JSON text) is sent to every subscriber of :id
// Usage: node ws-fanout.mjs [port]   (default 4700); prints "listening PORT" when ready.
import http from "node:http";
import { WebSocketServer, WebSocket } from "ws";

const port = Number(process.argv[2] ?? 4700);
const topics = new Map(); // id -> Set of sockets

const server = http.createServer((req, res) => {
  const m = /^\/pub\/([^/?]+)/.exec(req.url ?? "");
  if (req.method !== "POST" || !m) {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const data = Buffer.concat(chunks).toString("utf8");
    const subs = topics.get(m[1]);
    if (subs) {
      for (const ws of subs) {
        if (ws.readyState === WebSocket.OPEN) ws.send(data);
      }
    }
    res.writeHead(204).end();
  });
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on("upgrade", (req, socket, head) => {
  const m = /^\/sub\/([^/?]+)/.exec(req.url ?? "");
  if (!m) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const id = m[1];
    if (!topics.has(id)) topics.set(id, new Set());
    topics.get(id).add(ws);
    ws.on("close", () => topics.get(id)?.delete(ws));
  });
});

server.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));

// Turns the JSON lines of bench/scenarios into the Markdown tables of bench/RESULTS.md:
// one row per scenario, server and label, with the median of each figure over the runs.
//   node bench/summarize.mjs bench/out/scenarios-....jsonl
import { readFileSync } from "node:fs";

const lines = readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean);
const groups = new Map();
for (const l of lines) {
  const { scenario, server, run } = JSON.parse(l);
  const key = `${scenario}\t${server}\t${run.label}`;
  if (!groups.has(key)) groups.set(key, { scenario, server, label: run.label, runs: [] });
  groups.get(key).runs.push(run);
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const m = (g, k) => median(g.runs.map((r) => Number(r[k])));
const fmt = (v, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : "-");

const rows = { load: [], hold: [] };
for (const g of groups.values()) (g.runs[0].rss_per_conn !== undefined ? rows.hold : rows.load).push(g);

if (rows.load.length) {
  console.log("| scenario | server | run | connections | msg/s | deliveries/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | server CPU % | server CPU µs/delivery | runs |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const g of rows.load) {
    console.log(
      `| ${g.scenario} | ${g.server} | ${g.label} | ${fmt(m(g, "connections"))} | ${fmt(m(g, "rate"))} | ` +
        `${fmt(m(g, "deliveries_per_s"))} | ${fmt(m(g, "p50_us"))} | ${fmt(m(g, "p90_us"))} | ` +
        `${fmt(m(g, "p99_us"))} | ${fmt(m(g, "p999_us"))} | ${fmt(m(g, "max_us"))} | ` +
        `${fmt(m(g, "server_cpu_pct"), 1)} | ${fmt(m(g, "server_cpu_us_per_delivery"), 2)} | ${g.runs.length} |`,
    );
  }
}
if (rows.hold.length) {
  console.log("");
  console.log("| scenario | server | connections | connected and joined in (s) | server RSS per connection (bytes) | server RSS total (MiB) | kernel TCP buffer memory per connection (bytes) | server CPU idle % | runs |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const g of rows.hold) {
    console.log(
      `| ${g.scenario} | ${g.server} | ${fmt(m(g, "connections"))} | ${fmt(m(g, "connect_s"), 2)} | ${fmt(m(g, "rss_per_conn"))} | ` +
        `${fmt(m(g, "rss_bytes") / 1048576, 1)} | ${fmt(m(g, "kernel_tcp_mem_per_conn"))} | ` +
        `${fmt(m(g, "idle_cpu_pct"), 3)} | ${g.runs.length} |`,
    );
  }
}

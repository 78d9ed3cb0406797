// The Node baseline of platos-client/benches/realtime_scale.rs: N turns at
// once against tests/node/server.js with the npm socket.io-client, one
// socket per turn (`forceNew`, websocket only), as the TypeScript SDK opens
// them. Prints one JSON line with the same measures as the Rust side.
//
//   node tests/node/bench_client.js <base url> <turns>

'use strict';

const { io } = require('socket.io-client');

const [url, turnsArg] = process.argv.slice(2);
const turns = Number(turnsArg);
const baseRssKb = Math.round(process.memoryUsage().rss / 1024);
const cpu0 = process.cpuUsage();
const t0 = performance.now();

let finished = 0;
let events = 0;
let errors = 0;
const firstToken = [];
const connectedAt = [];

const percentile = (sorted, p) =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

const finish = () => {
  const cpu = process.cpuUsage(cpu0);
  const sorted = firstToken.slice().sort((a, b) => a - b);
  const ups = connectedAt.slice().sort((a, b) => a - b);
  process.stdout.write(
    JSON.stringify({
      client: 'node socket.io-client',
      turns,
      completed: finished,
      errors,
      events,
      base_rss_kb: baseRssKb,
      peak_rss_kb: process.resourceUsage().maxRSS,
      cpu_ms: (cpu.user + cpu.system) / 1000,
      wall_ms: performance.now() - t0,
      first_token_p50_ms: percentile(sorted, 50),
      first_token_p99_ms: percentile(sorted, 99),
      connected_p99_ms: percentile(ups, 99),
    }) + '\n',
  );
  process.exit(0);
};

for (let i = 0; i < turns; i++) {
  const sent = performance.now();
  let first = true;
  const socket = io(`${url}/agent`, {
    transports: ['websocket'],
    forceNew: true,
    auth: { token: 'bench' },
  });
  socket.on('connect', () => {
    connectedAt.push(performance.now() - sent);
    socket.emit('message', { message: 'hi', threadId: `t${i}` });
  });
  socket.on('connect_error', () => errors++);
  socket.on('agent_event', (event) => {
    events++;
    if (first && event.type === 'token') {
      first = false;
      firstToken.push(performance.now() - sent);
    }
    if (event.type === 'done') {
      socket.disconnect();
      if (++finished === turns) finish();
    }
  });
}

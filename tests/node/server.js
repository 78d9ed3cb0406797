// A Node socket.io server that mimics the Platos gateway's `/agent`
// namespace (docs/realtime.md), for the Rust SDK's realtime tests: the same
// server implementation Platos runs (npm `socket.io` 4.8), with a scripted
// turn instead of an agent.
//
// Started by tests/integration/tests/realtime/node.rs as a child process:
//   node tests/node/server.js
// It listens on 127.0.0.1:$PORT (default 0 = any free port) and prints
// `LISTENING <port>` on stdout, then one line per client event it receives:
//   RECV <connection#> <event name> <json payload>
// plus `CONNECT <connection#> <json auth>` and `DISCONNECT <connection#> <reason>`.
// The test reads those lines to assert what the client sent.
//
// Knobs (environment):
//   PING_INTERVAL_MS, PING_TIMEOUT_MS   Engine.IO heartbeat (default 25000 / 10000)
//   TOKENS            tokens in the scripted turn (default 5)
//   TOKEN_DELAY_MS    pause before each token (default 0)
//   DROP_AFTER_TOKENS close the emitting connection after this many tokens
//                     (first turn only); the turn then waits for the thread's
//                     `join_thread` from a new connection and carries on
//                     routing events to the thread room.
//   EXPECT_TOKEN      refuse connections whose token differs, the gateway way
//                     (event `error` + disconnect)
//   LATENCY_MS        a simulated network delay: the namespace connect and
//                     each `message` are handled this much later (default 0)
//   QUIET             when set, no RECV lines (benchmarks)
//   HOLD_AFTER_TOKENS hold every turn after this many tokens until `stop`
//                     (a turn in flight when the test kills the process)
//
// REST: `GET /api/v1/agent/threads/{id}/messages` answers the thread's messages as this
// process knows them, which is none: a restarted gateway process has no
// memory of the turns of the one before (logged as `HTTP GET <path>`).
//
// Per-agent namespaces `/agent/{agentId}` behave like `/agent`. When
// DROP_AFTER_TOKENS fires, every turn of the dropped connection waits for
// its thread's `join_thread` (from any connection) before going on.

'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const env = (name, fallback) => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number(v);
};

const PING_INTERVAL = env('PING_INTERVAL_MS', 25000);
const PING_TIMEOUT = env('PING_TIMEOUT_MS', 10000);
const TOKENS = env('TOKENS', 5);
const TOKEN_DELAY = env('TOKEN_DELAY_MS', 0);
const DROP_AFTER = env('DROP_AFTER_TOKENS', -1);
const EXPECT_TOKEN = process.env.EXPECT_TOKEN || null;
const LATENCY = env('LATENCY_MS', 0);
const QUIET = Boolean(process.env.QUIET);
const HOLD_AFTER = env('HOLD_AFTER_TOKENS', -1);

const log = (line) => process.stdout.write(line + '\n');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const httpServer = http.createServer((req, res) => {
  const path = (req.url || '').split('?')[0];
  const thread = /^\/api\/v1\/agent\/threads\/([^/]+)\/messages$/.exec(path);
  if (req.method === 'GET' && thread) {
    log(`HTTP GET ${path}`);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ messages: [], threadId: decodeURIComponent(thread[1]) }));
    return;
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  pingInterval: PING_INTERVAL,
  pingTimeout: PING_TIMEOUT,
  transports: ['websocket'],
});
const room = (threadId) => `thread:${threadId}`;
// Threads whose connection was dropped, until they are re-joined; and the
// turns waiting for that.
const awaitingRejoin = new Set();
const rejoinWaiters = new Map();
let dropped = false;
let connections = 0;

const rejoined = (threadId) =>
  awaitingRejoin.has(threadId)
    ? Promise.race([new Promise((resolve) => rejoinWaiters.set(threadId, resolve)), sleep(10000)])
    : null;

const onConnection = (socket) => {
  const nsp = socket.nsp;
  const n = ++connections;
  const auth = socket.handshake.auth || {};
  const token = auth.token || socket.handshake.headers['x-platos-session-token'] || null;
  log(`CONNECT ${n} ${JSON.stringify({ ...auth, token: token ? 'present' : null, headerToken: socket.handshake.headers['x-platos-session-token'] || null, namespace: nsp.name })}`);

  if (EXPECT_TOKEN && token !== EXPECT_TOKEN) {
    socket.emit('error', { message: 'Invalid or expired session token.' });
    socket.disconnect(true);
    return;
  }
  socket.emit('connected', {
    status: 'ok',
    organizationId: auth.organizationId || 'org',
    projectId: auth.projectId || 'proj',
    environmentId: auth.environmentId || 'env',
    userId: auth.userId || 'user',
    socketId: socket.id,
  });

  const turns = new Map(); // threadId -> { stopped }

  socket.onAny((name, payload) => {
    if (!QUIET) log(`RECV ${n} ${name} ${JSON.stringify(payload === undefined ? null : payload)}`);
  });
  socket.on('disconnect', (reason) => log(`DISCONNECT ${n} ${reason}`));

  socket.on('join_thread', (payload) => {
    const threadId = payload && payload.threadId;
    if (!threadId) return;
    socket.join(room(threadId));
    socket.emit('joined_thread', { threadId });
    awaitingRejoin.delete(threadId);
    const waiter = rejoinWaiters.get(threadId);
    if (waiter) {
      rejoinWaiters.delete(threadId);
      waiter();
    }
  });
  socket.on('leave_thread', (payload) => payload && socket.leave(room(payload.threadId)));
  // Current gateways have no handler for `resume_stream`; it is only logged.

  socket.on('stop', (payload) => {
    const turn = payload && turns.get(payload.threadId);
    if (turn) {
      turn.stopped = true;
      if (turn.release) turn.release();
    }
  });

  socket.on('approval_response', (payload) => {
    if (payload && payload.approvalId) {
      socket.emit('approval_ack', { approvalId: payload.approvalId, received: true });
    } else {
      socket.emit('approval_response_error', { approvalId: null, error: 'approvalId is required' });
    }
  });

  socket.on('message', async (payload) => {
    if (LATENCY > 0) await sleep(LATENCY);
    const threadId = payload && payload.threadId;
    if (!threadId) {
      socket.emit('error', { message: 'threadId is required' });
      return;
    }
    const turn = { stopped: false };
    turns.set(threadId, turn);
    // Like the gateway: events go to the emitting socket and to the thread's
    // room (a socket in both gets each event once).
    const emit = (event) =>
      nsp.to(socket.id).to(room(threadId)).emit('agent_event', { ...event, threadId });

    emit({ type: 'status', status: 'thinking' });
    emit({ type: 'meta', thread_id: threadId, agent_id: payload.agentId || 'agent' });
    for (let i = 0; i < TOKENS; i++) {
      if (TOKEN_DELAY > 0) await sleep(TOKEN_DELAY);
      const waiting = rejoined(threadId);
      if (waiting) await waiting;
      if (turn.stopped) {
        emit({ type: 'done', stopped: true });
        turns.delete(threadId);
        return;
      }
      emit({ type: 'token', text: `tok${i} ` });
      if (i + 1 === HOLD_AFTER && !turn.stopped) {
        await new Promise((resolve) => {
          turn.release = resolve;
        });
      }
      if (i + 1 === DROP_AFTER && !dropped) {
        dropped = true;
        for (const thread of turns.keys()) awaitingRejoin.add(thread);
        socket.conn.close();
      }
    }
    emit({ type: 'tool_call', name: 'search', params: { q: 'platos' }, callId: 'c1' });
    emit({ type: 'tool_result', name: 'search', result: { hits: 1 }, callId: 'c1' });
    emit({
      type: 'message_persisted',
      messageId: 'm1',
      threadId,
      costCents: 0.5,
      inputTokens: 10,
      outputTokens: TOKENS,
      totalTokens: 10 + TOKENS,
    });
    emit({ type: 'done', usage: { inputTokens: 10, outputTokens: TOKENS, totalTokens: 10 + TOKENS } });
    turns.delete(threadId);
  });
};

const namespaces = [io.of('/agent'), io.of(/^\/agent\/[\w.:-]+$/)];
for (const nsp of namespaces) {
  if (LATENCY > 0) nsp.use((_socket, next) => setTimeout(next, LATENCY));
  nsp.on('connection', onConnection);
}

const port = Number(process.env.PORT || 0);
httpServer.listen(port, '127.0.0.1', () => {
  log(`LISTENING ${httpServer.address().port}`);
});

// Exit when the parent test goes away (its end of stdin closes).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

// A real forward proxy for the SDK's proxy tests (tests/consumer): npm
// `proxy` (CONNECT tunnels and plain forwarding) in its own process, with
// Basic authentication, and a host name only this process can resolve, so a
// request that reaches that name proves it went through the proxy.
//
//   node forward_proxy.mjs --user U --password P --host NAME=127.0.0.1
//
// Prints `listening <port>` once ready; each handled CONNECT or request is
// logged as `connect <target> <status>` / `request <url> <status>` lines on
// stdout, so a test can count what went through.
import dns from 'node:dns';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createProxy } from 'proxy';

const { values } = parseArgs({
  options: {
    user: { type: 'string' },
    password: { type: 'string' },
    host: { type: 'string', multiple: true, default: [] },
  },
});

const names = new Map(values.host.map((pair) => pair.split('=')));

// Node's net and http resolve through dns.lookup at call time.
const lookup = dns.lookup;
dns.lookup = (hostname, options, callback) => {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  const address = names.get(hostname);
  if (address === undefined) {
    return lookup(hostname, options, callback);
  }
  const family = address.includes(':') ? 6 : 4;
  if (options && options.all) {
    return process.nextTick(callback, null, [{ address, family }]);
  }
  return process.nextTick(callback, null, address, family);
};

const server = createProxy(http.createServer());
if (values.user !== undefined) {
  const expected = 'Basic ' + Buffer.from(`${values.user}:${values.password ?? ''}`).toString('base64');
  server.authenticate = (req) => req.headers['proxy-authorization'] === expected;
}
server.on('connect', (req) => {
  req.socket.once('close', () => {});
});
const log = (kind, target, res) => console.log(`${kind} ${target} ${res.statusCode}`);
server.prependListener('request', (req, res) => res.once('finish', () => log('request', req.url, res)));
server.prependListener('connect', (req, socket) => {
  // `proxy` answers CONNECT by writing to the socket; read the status it wrote.
  const write = socket.write.bind(socket);
  let logged = false;
  socket.write = (chunk, ...rest) => {
    if (!logged) {
      logged = true;
      const status = String(chunk).match(/^HTTP\/1\.\d (\d{3})/);
      console.log(`connect ${req.url} ${status ? status[1] : '?'}`);
    }
    return write(chunk, ...rest);
  };
});
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}

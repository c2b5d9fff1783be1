// node-echo: a Node.js echo server on the net module; each socket is piped
// to itself, so a client that stops reading pauses the reads (backpressure).
// A peer for bench/echo and bench/memory; prints nothing on success.
//
// Usage: node node-echo.js PORT
'use strict';
const net = require('net');

const port = Number(process.argv[2]);
if (process.argv.length !== 3 || !Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node-echo PORT\n');
  process.exit(2);
}

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy()); // resets are normal
  socket.pipe(socket);
});
server.on('error', (err) => {
  process.stderr.write(`node-echo: ${err.message}\n`);
  process.exit(1);
});
server.listen({ host: '127.0.0.1', port, backlog: 4096 });

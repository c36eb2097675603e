// The seed's chat room on Node.js with the ws package (npm, see
// package.json), for bench/run's ws section. Lines as squall's chat
// plugin says them (the seed's, byte for byte), in local time:
//   [IP] joined at YYYY-MM-DD HH:MM:SS       to everyone, the newcomer too
//   [IP] at YYYY-MM-DD HH:MM:SS: MESSAGE     to everyone, the sender too
//   [IP] left at YYYY-MM-DD HH:MM:SS         to those who remain
// Broadcast as ws's documentation shows it: send to every open client.
// No Origin check. One process.
//
//     (cd bench/peers && npm ci) && node node_chat.js PORT [PATH [CERT KEY]]
//
// With CERT and KEY (PEM files) it listens over https, so the room is
// wss:// (Node's TLS defaults), for bench/wss.sh.
//
// With PATH ending in "/*" (node_chat.js PORT /rooms/*, for bench/c1m.sh),
// each NAME of PATH's prefix plus NAME ([A-Za-z0-9._-]{1,64}) is a room
// of its own, made at its first join and gone with its last member.
//
// With WS_DEFLATE=1 in the environment it accepts permessage-deflate
// (ws's perMessageDeflate: true, its defaults: messages under 1024 bytes
// go out as they are, zlib's default level, each connection its own
// compressor), for the compressing room of bench/README.md (issue 18).
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 8888);
const route = process.argv[3] || '/chat';
const certFile = process.argv[4];
const keyFile = process.argv[5];

function two(n) {
  return n < 10 ? '0' + n : String(n);
}

function when() {
  const d = new Date();
  return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' +
    two(d.getDate()) + ' ' + two(d.getHours()) + ':' +
    two(d.getMinutes()) + ':' + two(d.getSeconds());
}

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 64 * 1024,
  perMessageDeflate: process.env.WS_DEFLATE === '1',
});

// Rooms: a prefix of PATH/* maps NAME to its members' Set.
const prefix = route.endsWith('/*') ? route.slice(0, -1) : null;
const rooms = new Map();

function broadcast(room, line) {
  for (const c of room || wss.clients)
    if (c.readyState === WebSocket.OPEN)
      c.send(line);
}

wss.on('connection', (ws, req) => {
  const ip = req.socket.remoteAddress;
  let room = null;

  if (prefix) {
    const name = req.url.split('?')[0].slice(prefix.length);
    room = rooms.get(name);
    if (!room)
      rooms.set(name, room = new Set());
    room.add(ws);
    ws.on('close', () => {
      room.delete(ws);
      if (room.size === 0)
        rooms.delete(name);
    });
  }
  const broadcastHere = (line) => broadcast(room, line);
  broadcastHere(`[${ip}] joined at ${when()}`);
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.close(1003, 'text only');
      return;
    }
    let msg = data.toString();
    const nul = msg.indexOf('\0');  // the seed's "%s": ends at a NUL
    if (nul >= 0)
      msg = msg.slice(0, nul);
    broadcastHere(`[${ip}] at ${when()}: ${msg}`);
  });
  ws.on('close', () => broadcastHere(`[${ip}] left at ${when()}`));
  ws.on('error', () => {});
});

function notWs(req, res) {
  res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' });
  res.end('this is a WebSocket endpoint\n');
}

const server = certFile && keyFile ?
  https.createServer({
    cert: fs.readFileSync(certFile),
    key: fs.readFileSync(keyFile),
  }, notWs) :
  http.createServer(notWs);

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (prefix ? !(path.startsWith(prefix) &&
      /^[A-Za-z0-9._-]{1,64}$/.test(path.slice(prefix.length))) :
    path !== route) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));  // a clean exit for wss.sh

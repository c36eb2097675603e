// The same endpoints in plain Node.js (no npm package), for bench/run:
// /hello, /data (fetch + JSON.parse) and /multi (two fetches with
// Promise.all). One process.
//
//     node node_fetch.js PORT UPSTREAM_URL1 UPSTREAM_URL2
'use strict';
const http = require('http');

const [port, url1, url2] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode < 200 || res.statusCode > 299)
          reject(new Error('upstream answered ' + res.statusCode));
        else
          resolve(JSON.parse(Buffer.concat(chunks).toString()));
      });
    }).on('error', reject);
  });
}

function json(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

http.createServer(async (req, res) => {
  try {
    if (req.url === '/hello') {
      res.writeHead(200, { 'Content-Type': 'text/plain',
        'Content-Length': 12 });
      res.end('Hello, world');
    } else if (req.url === '/data') {
      json(res, 200, { data: await get(url1) });
    } else if (req.url === '/multi') {
      const [first, second] = await Promise.all([get(url1), get(url2)]);
      json(res, 200, { first, second });
    } else {
      res.writeHead(404);
      res.end();
    }
  } catch (e) {
    json(res, 502, { error: String(e.message) });
  }
}).listen(Number(port), '127.0.0.1');

// chat.mjs - the chat page in a real browser: headless Chromium, driven
// over the DevTools protocol with Node's own WebSocket client (no npm
// package). Opens http://127.0.0.1:PORT/, waits for "connected", types a
// line, sends it with the form, and checks that the room's lines appear.
// Both Chromium and Node's client compress (permessage-deflate): the
// page's handshake must say so, and a Node client in the room must see
// the page's line, and the page the Node client's.
// With TLSPORT, the page comes from https://127.0.0.1:TLSPORT/ (Chromium
// told to accept the test's self-signed certificate) and must talk wss,
// while the Node client stays on plain ws://PORT: one room, both ways.
// With ROOM in the environment, the page is opened with ?room=ROOM and
// must talk to /rooms/ROOM, where the Node client joins it.
// With NODE_PORT, the Node client talks to that port (a second squalld
// on the same Redis). With STOP and START (shell commands: kill the
// page's squalld, start it again on PORT), /chat is on a Redis stream:
// the page must speak squall.chat.v1; its squalld is stopped, the Node
// client says three lines meanwhile, its squalld is started again, and
// the page must come back by itself with ?last_id= and show the three
// lines, once each and in order, and nothing it had shown before again;
// /status must count the return.
//
//     node --experimental-websocket chat.mjs PORT [TLSPORT]
// Exits 0 when the page works, 1 otherwise (saying why).
import { execSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const port = process.argv[2];
const tlsPort = process.argv[3];
const room = process.env.ROOM;
const chatPath = room ? `/rooms/${room}` : '/chat';
const page = (tlsPort ? `https://127.0.0.1:${tlsPort}/` :
  `http://127.0.0.1:${port}/`) + (room ? `?room=${room}` : '');
let finished = false;
const profile = mkdtempSync(join(tmpdir(), 'squall-chromium-'));
const browser = spawn('chromium', [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
  '--remote-debugging-port=0', `--user-data-dir=${profile}`,
  ...(tlsPort ? ['--ignore-certificate-errors'] : []), 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });

// Chromium's helper processes (renderer, GPU, crashpad) share its process
// group and may still write to the profile after the browser exits: stop
// the whole group, then remove the profile, retrying a few times. A
// cleanup that fails is a warning, never a failed test.
async function cleanup() {
  const exited = browser.exitCode !== null || browser.signalCode !== null;
  const gone = exited ? Promise.resolve() :
    new Promise((resolve) => browser.once('exit', resolve));
  try { process.kill(-browser.pid, 'SIGTERM'); } catch {}
  await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
  try { process.kill(-browser.pid, 'SIGKILL'); } catch {}
  for (let i = 0; i < 20; i++) {
    try {
      rmSync(profile, { recursive: true, force: true });
      return;
    } catch (e) {
      if (i === 19)
        console.log(`warning: could not remove ${profile}: ${e.code}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function fail(why) {
  if (finished)
    return;
  console.log(`not ok: ${why}`);
  finished = true;
  cleanup().finally(() => process.exit(1));
}
setTimeout(() => fail('timed out'), 30000).unref();
// fail, and go no further (fail exits once the browser is gone)
async function die(why) {
  fail(why);
  await new Promise(() => {});
}

const devtools = await new Promise((resolve) => {
  let err = '';
  browser.stderr.on('data', (d) => {
    err += d;
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
    if (m)
      resolve(m[1]);
  });
  browser.on('exit', () => {
    if (!finished)
      fail(`chromium exited: ${err.slice(-500)}`);
  });
});
const http = new URL(devtools.replace('ws://', 'http://')).host;
const target = await (await fetch(`http://${http}/json/new?about:blank`,
  { method: 'PUT' })).json();

const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve) => { ws.onopen = resolve; });
let seq = 0;
const pending = new Map();
let pageExtensions = null;
let pageSocket = null;
ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.method === 'Network.webSocketCreated')
    pageSocket = msg.params.url;
  if (msg.method === 'Network.webSocketHandshakeResponseReceived') {
    const h = msg.params.response.headers;
    const k = Object.keys(h).find(
      (n) => n.toLowerCase() === 'sec-websocket-extensions');
    pageExtensions = k ? h[k] : '';
  }
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
};
function send(method, params = {}) {
  const id = ++seq;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve) => pending.set(id, resolve));
}
async function evaluate(expression) {
  const r = await send('Runtime.evaluate', { expression, returnByValue: true });
  return r.result && r.result.result ? r.result.result.value : undefined;
}
async function until(expression, what) {
  for (let i = 0; i < 200; i++) {
    if (await evaluate(expression))
      return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`${what}; the page shows: ` +
    await evaluate('document.body.innerText'));
}

// The page's lines now.
async function pageLines() {
  return evaluate(`[...document.querySelectorAll('#lines li')].map(
    (li) => li.textContent)`);
}

// Node's client waits for its lines to come back (they are then in the
// stream).
async function nodeHears(re, what) {
  for (let i = 0; i < 200 && !nodeLines.some((l) => re.test(l)); i++)
    await new Promise((r) => setTimeout(r, 50));
  if (!nodeLines.some((l) => re.test(l)))
    await die(`the node client did not hear ${what}: ${nodeLines}`);
}

async function recover() {
  const proto = await evaluate('socket.protocol');
  if (proto !== 'squall.chat.v1')
    await die(`the page's subprotocol is "${proto}", not squall.chat.v1`);
  const before = await pageLines();
  execSync(process.env.STOP);
  await until(`document.getElementById('state').textContent !==
    'connected'`, 'the page did not see its connection drop');
  for (let i = 1; i <= 3; i++)
    node.send(`missed ${i}`);
  await nodeHears(/: missed 3$/, 'its third line');
  execSync(process.env.START, { stdio: ['ignore', 'ignore', 'inherit'] });
  await until(`[...document.querySelectorAll('#lines li')].some(
    (li) => / at .*: missed 3$/.test(li.textContent))`,
    'the page did not catch up after its server came back');
  if (!/\?last_id=\d+-\d+$/.test(pageSocket))
    await die(`the page came back without ?last_id=: ${pageSocket}`);
  const after = await pageLines();
  if (after.slice(0, before.length).join('\n') !== before.join('\n'))
    await die(`the lines shown before changed: ${after}`);
  const added = after.slice(before.length);
  const missed = added.filter((l) => / at .*: missed \d$/.test(l));
  if (missed.length !== 3 || !missed.every((l, i) =>
    l.endsWith(`: missed ${i + 1}`)))
    await die(`the page shows the missed lines as ${missed}`);
  // the gap, then its joined line; nothing said before comes again
  if (added.some((l) => !/ joined at /.test(l) && before.includes(l)))
    await die(`the page showed lines again: ${added}`);
  const status = await (await fetch(`http://127.0.0.1:${port}/status`)).text();
  if (!/"recovered": *"1"/.test(status) || !/"replayed": *"3"/.test(status))
    await die(`/status does not count the return: ${status}`);
}

await send('Page.enable');
await send('Network.enable');
await send('Page.navigate', { url: page });
await until(`document.getElementById('state') &&
  document.getElementById('state').textContent === 'connected'`,
  'the page did not connect');
await until(`[...document.querySelectorAll('#lines li')].some(
  (li) => / joined at \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$/.test(li.textContent))`,
  'no "joined" line');
if (tlsPort && !/^wss:\/\//.test(pageSocket || ''))
  await die(`the https page did not talk wss: ${pageSocket}`);
if (!(pageSocket || '').endsWith(chatPath))
  await die(`the page talked to ${pageSocket}, not ${chatPath}`);
if (!/^permessage-deflate\b/.test(pageExtensions || ''))
  await die(`the page's handshake did not agree to compression: ` +
    `${pageExtensions}`);
const nodePort = process.env.NODE_PORT || port;
const node = new WebSocket(`ws://127.0.0.1:${nodePort}${chatPath}`);
const nodeLines = [];
node.onmessage = (event) => nodeLines.push(event.data);
await new Promise((resolve) => { node.onopen = resolve; });
if (!/^permessage-deflate\b/.test(node.extensions))
  await die(`node's client got extensions "${node.extensions}"`);
await evaluate(`document.getElementById('text').value = 'hello from chromium';
  document.getElementById('send').requestSubmit(); true`);
await until(`[...document.querySelectorAll('#lines li')].some(
  (li) => /^\\[127\\.0\\.0\\.1\\] at .*: hello from chromium$/.test(li.textContent))`,
  'the sent line did not come back');
node.send('hello from node');
await until(`[...document.querySelectorAll('#lines li')].some(
  (li) => /^\\[127\\.0\\.0\\.1\\] at .*: hello from node$/.test(li.textContent))`,
  'the page did not get the node client\'s line');
for (let i = 0; i < 100 && !nodeLines.some(
  (l) => /^\[127\.0\.0\.1\] at .*: hello from chromium$/.test(l)); i++)
  await new Promise((r) => setTimeout(r, 50));
if (!nodeLines.some((l) => /^\[127\.0\.0\.1\] at .*: hello from chromium$/.test(l)))
  await die(`the node client did not get the page's line: ${nodeLines}`);
if (process.env.START)
  await recover();
node.close();
console.log(`ok: the chat page (${page}, ${pageSocket}) connected, ` +
  'joined, sent and received, compressed, with a node client in the room' +
  (process.env.START ? ', and caught up after its server was killed' : ''));
ws.close();
finished = true;
await cleanup();
process.exit(0);

# bench/deflate_idle.py PORT N PID [big] - N chat members (/chat) that
# offer permessage-deflate and each send one compressed line, then idle;
# prints the RSS growth of squalld (PID) per member, and with "big" again
# after one 3 KB compressed message to all (bench/README.md, issue 18).
import base64, os, socket, struct, sys, time, zlib
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
def frame(payload):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    d = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    d = d[:-4]
    mask = os.urandom(4)
    hdr = bytes([0xC1])
    ln = len(d)
    hdr += bytes([0x80 | ln]) if ln < 126 else bytes([0x80 | 126]) + struct.pack("!H", ln)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(d))
base = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    s.sendall(frame(("hello from member %d " % i).encode() * 3))
    s.setblocking(False)
    socks.append(s)
    if i % 200 == 199:   # drain what the room sends, now and then
        for t in socks:
            try:
                while t.recv(1 << 16): pass
            except BlockingIOError: pass
def drain():   # what the room sent, read and dropped, until it settles
    time.sleep(3)
    for t in socks:
        try:
            while t.recv(1 << 16): pass
        except BlockingIOError: pass
    time.sleep(2)
drain()
print("members %d, rss growth %.2f KiB per member" % (n, (rss() - base) / n))
if len(sys.argv) > 4:
    socks[0].setblocking(True)
    socks[0].sendall(frame(os.urandom(1500).hex().encode()))
    socks[0].setblocking(False)
    drain()
    print("after a 3 KB message to all: rss growth %.2f KiB per member" % ((rss() - base) / n))

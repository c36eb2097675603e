# bench/talk.py PORT SECONDS - a room of 100 (/rooms/talk on a route of
# rooms) where one member says 100 lines a second and every member reads:
# the talking room among idle ones of bench/README.md (issue 18).
import base64, os, selectors, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
sel = selectors.DefaultSelector()
socks = []
for i in range(100):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"GET /rooms/talk HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
def frame(p):
    m = os.urandom(4)
    return bytes([0x81, 0x80 | len(p)]) + m + bytes(b ^ m[i % 4] for i, b in enumerate(p))
t0 = time.time(); n = 0; got = 0
while time.time() - t0 < secs:
    due = int((time.time() - t0) * 100)
    while n < due:
        socks[0].setblocking(True); socks[0].sendall(frame(b"line %d from the talker" % n)); socks[0].setblocking(False); n += 1
    for k, _ in sel.select(0.005):
        try:
            d = k.fileobj.recv(65536); got += len(d)
        except BlockingIOError: pass
print("talk: %d lines sent, %d bytes received" % (n, got))

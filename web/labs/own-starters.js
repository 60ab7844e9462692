// own-starters.js: starter programs for the own lab, written for socklab (comments in English and Chinese).
//
// Each starter is a server and a client that work as they are, so pressing Run
// shows a full trace; the comments point at what to change and what to watch.

const ECHO_SERVER = {
	en: `# An upper-casing echo server over TCP.
import socket

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# Without this line, restarting the server right after a connection closed
# can fail with EADDRINUSE (the port is held in TIME_WAIT).
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8080))
srv.listen(5)
print("listening on port 8080")

while True:
    conn, addr = srv.accept()          # blocks until a client connects
    print("connected:", addr)
    while True:
        data = conn.recv(1024)         # b"" means the client closed its side
        if not data:
            break
        conn.sendall(data.upper())
    conn.close()
`,
	zh: `# 一个把消息转成大写再发回的 TCP 回显服务器。
import socket

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# 去掉这一行后，连接刚关闭就重启服务器，bind() 可能因 EADDRINUSE 失败
#（端口仍被 TIME_WAIT 状态的套接字占用）。
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8080))
srv.listen(5)
print("在 8080 端口监听")

while True:
    conn, addr = srv.accept()          # 阻塞，直到有客户端连接
    print("已连接：", addr)
    while True:
        data = conn.recv(1024)         # 收到 b"" 表示客户端关闭了它的一端
        if not data:
            break
        conn.sendall(data.upper())
    conn.close()
`,
};

const ECHO_CLIENT = {
	en: `# A client for the echo server: "server" is the server's address.
import socket

c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
c.connect(("server", 8080))
for msg in ["hello", "socket", "lab"]:
    c.sendall(msg.encode())
    reply = c.recv(1024)
    print(msg, "->", reply.decode())
c.close()
`,
	zh: `# 回显服务器的客户端："server" 就是服务器的地址。
import socket

c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
c.connect(("server", 8080))
for msg in ["hello", "socket", "lab"]:
    c.sendall(msg.encode())
    reply = c.recv(1024)
    print(msg, "->", reply.decode())
c.close()
`,
};

const UDP_SERVER = {
	en: `# A UDP echo server: no connection, one datagram in, one datagram out.
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9090))
print("waiting for datagrams on port 9090")
while True:
    data, addr = s.recvfrom(2048)      # each call returns one whole datagram
    s.sendto(data.upper(), addr)
`,
	zh: `# UDP 回显服务器：没有连接，收一个数据报，回一个数据报。
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9090))
print("在 9090 端口等待数据报")
while True:
    data, addr = s.recvfrom(2048)      # 每次调用返回一个完整的数据报
    s.sendto(data.upper(), addr)
`,
};

const UDP_CLIENT = {
	en: `# A UDP client: sendto() needs no connect(); recvfrom() says who answered.
import socket

c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(2)
for msg in [b"one", b"two", b"three"]:
    c.sendto(msg, ("server", 9090))
    data, addr = c.recvfrom(2048)
    print(data, "from", addr)
`,
	zh: `# UDP 客户端：sendto() 不需要 connect()；recvfrom() 会告诉你是谁回复的。
import socket

c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(2)
for msg in [b"one", b"two", b"three"]:
    c.sendto(msg, ("server", 9090))
    data, addr = c.recvfrom(2048)
    print(data, "from", addr)
`,
};

const GLUE_SERVER = {
	en: `# A server that assumes one recv() returns one message: watch it fail.
import socket, time

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8080))
srv.listen(1)
conn, _ = srv.accept()
time.sleep(0.2)                        # the client's messages pile up meanwhile
while True:
    data = conn.recv(1024)
    if not data:
        break
    print("one recv() returned", len(data), "bytes:", data)
`,
	zh: `# 这个服务器以为一次 recv() 就是一条消息：看看它为什么会出错。
import socket, time

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8080))
srv.listen(1)
conn, _ = srv.accept()
time.sleep(0.2)                        # 这段时间里客户端的消息在接收缓冲区里堆积
while True:
    data = conn.recv(1024)
    if not data:
        break
    print("一次 recv() 返回了", len(data), "字节：", data)
`,
};

const GLUE_CLIENT = {
	en: `# Three send() calls: TCP is a byte stream, it keeps no message boundaries.
# To keep them, send a length first: struct.pack("!I", len(body)) + body.
import socket

c = socket.create_connection(("server", 8080))
for msg in [b"first", b"second", b"third"]:
    c.sendall(msg)
c.close()
`,
	zh: `# 三次 send()：TCP 是字节流，不保留消息边界（粘包）。
# 要保留边界，先发送长度：struct.pack("!I", len(body)) + body。
import socket

c = socket.create_connection(("server", 8080))
for msg in [b"first", b"second", b"third"]:
    c.sendall(msg)
c.close()
`,
};

const STARTERS = [
	{ id: 'echo', title: 'own.starter.echo', server: ECHO_SERVER, client: ECHO_CLIENT },
	{ id: 'udp', title: 'own.starter.udp', server: UDP_SERVER, client: UDP_CLIENT },
	{ id: 'glue', title: 'own.starter.glue', server: GLUE_SERVER, client: GLUE_CLIENT },
];

// The starters with their texts in lang ("zh-CN" gets the Chinese comments).
export function starters(lang) {
	const k = String(lang || '').startsWith('zh') ? 'zh' : 'en';
	return STARTERS.map((s) => ({ id: s.id, title: s.title, files: { server: s.server[k], client: s.client[k] } }));
}

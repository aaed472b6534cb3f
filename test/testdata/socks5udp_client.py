"""A SOCKS5 UDP client for ferry's tests, on PySocks (Debian's
python3-socks; run with /usr/bin/python3).

  dns PROXY_HOST PROXY_PORT DNS_HOST DNS_PORT NAME
      sends one A query for NAME to the DNS server through the proxy's UDP
      relay and prints the first address of the answer.
  echo PROXY_HOST PROXY_PORT ECHO_HOST ECHO_PORT COUNT WINDOW SEED
      sends COUNT datagrams of random sizes (4 to 1400 bytes, a sequence
      number first) to a UDP echo server through the relay, never more
      than WINDOW unanswered at a time, so that no socket buffer on the
      way overflows; checks every echo against what was sent and prints
      "sent S received R".
"""
import random
import socket
import struct
import sys

import socks


def relay_socket(host, port, family=socket.AF_INET):
    s = socks.socksocket(family, socket.SOCK_DGRAM)
    s.set_proxy(socks.SOCKS5, host, port)
    s.settimeout(5)
    return s


def dns(proxy_host, proxy_port, dns_host, dns_port, name):
    q = struct.pack(">HHHHHH", 0x2a2a, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    s = relay_socket(proxy_host, int(proxy_port))
    s.sendto(q, (dns_host, int(dns_port)))
    data, _ = s.recvfrom(4096)
    if data[:2] != b"\x2a\x2a" or struct.unpack(">H", data[6:8])[0] < 1:
        sys.exit("no answer: %r" % data)
    print(socket.inet_ntoa(data[-4:]))


def echo(proxy_host, proxy_port, echo_host, echo_port, count, window, seed):
    count, window = int(count), int(window)
    rnd = random.Random(int(seed))
    s = relay_socket(proxy_host, int(proxy_port))
    dst = (echo_host, int(echo_port))
    pending = {}
    sent = received = 0
    while received < count:
        while sent < count and len(pending) < window:
            body = struct.pack(">I", sent) + rnd.randbytes(rnd.randint(0, 1396))
            pending[sent] = body
            s.sendto(body, dst)
            sent += 1
        data, _ = s.recvfrom(65535)
        seq = struct.unpack(">I", data[:4])[0]
        if pending.pop(seq, None) != data:
            sys.exit("datagram %d came back changed or twice" % seq)
        received += 1
    print("sent %d received %d" % (sent, received))


if __name__ == "__main__":
    {"dns": dns, "echo": echo}[sys.argv[1]](*sys.argv[2:])

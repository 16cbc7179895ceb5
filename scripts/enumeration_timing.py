#!/usr/bin/env python3
"""Response-time comparison for account enumeration (SECURITY.md #20), run by enumeration.sh.

For each pair of cases (e.g. login with an unknown address vs. a known address and a wrong
password) it sends SAMPLES requests per case, interleaved in random order so that drift hits
both alike, each from a fresh client address (X-Forwarded-For through the trusted loopback
proxy, so per-address quotas never trigger), and reports the medians, their difference, and a
two-sided Mann-Whitney U test (normal approximation with tie correction). It also checks that
the bodies are byte-identical apart from the request id. A figure for the notes, not a test.

Usage: enumeration_timing.py PORT ORIGIN [SAMPLES] [register]; with `register`, the server must
run in verify-first mode on a database where the known-* accounts exist (enumeration.sh does
this in its second phase).
"""
import http.client
import json
import math
import random
import statistics
import sys
import time

PORT = int(sys.argv[1])
ORIGIN = sys.argv[2]
SAMPLES = int(sys.argv[3]) if len(sys.argv) > 3 else 200
PASSWORD = "correct horse battery staple"
rng = random.Random(7)


def client_ip():
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def post(conn, path, body):
    payload = json.dumps(body)
    headers = {
        "Content-Type": "application/json",
        "Origin": ORIGIN,
        "X-Forwarded-For": client_ip(),
    }
    start = time.perf_counter()
    conn.request("POST", path, body=payload, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - start
    return resp.status, data, elapsed


def strip_request_id(data):
    try:
        v = json.loads(data)
    except ValueError:
        return data
    if isinstance(v, dict):
        v.pop("request_id", None)
    return json.dumps(v, sort_keys=True).encode()


def mann_whitney(a, b):
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    n1, n2 = len(a), len(b)
    ranked = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = avg
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, ranked) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u1 - mu) / sigma if sigma else 0.0
    return math.erfc(abs(z) / math.sqrt(2))


def compare(conn, name, case_a, case_b):
    times = {"a": [], "b": []}
    bodies = {"a": set(), "b": set()}
    statuses = {"a": set(), "b": set()}
    order = ["a"] * SAMPLES + ["b"] * SAMPLES
    rng.shuffle(order)
    for i, which in enumerate(order):
        path, body = (case_a if which == "a" else case_b)(i)
        status, data, elapsed = post(conn, path, body)
        times[which].append(elapsed * 1000)
        bodies[which].add(strip_request_id(data))
        statuses[which].add(status)
    ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
    p = mann_whitney(times["a"], times["b"])
    identical = bodies["a"] == bodies["b"] and len(bodies["a"]) == 1
    print(
        f"{name}: n={SAMPLES} each | median {ma:.2f} ms vs {mb:.2f} ms "
        f"(diff {mb - ma:+.2f} ms) | p90 {quantile(times['a'], 0.9):.2f} vs "
        f"{quantile(times['b'], 0.9):.2f} ms | Mann-Whitney p={p:.3f} | "
        f"statuses {sorted(statuses['a'])} vs {sorted(statuses['b'])} | "
        f"bodies identical apart from request_id: {identical}"
    )


def quantile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def register_phase(conn, known):
    # Verify-first registration: a taken address vs a free one (same 202, same work).
    compare(
        conn,
        "register (verify-first): free address vs taken address",
        lambda i: ("/api/v1/auth/register", {"email": f"fresh-{i}@example.com", "password": PASSWORD}),
        lambda i: ("/api/v1/auth/register", {"email": known[i % len(known)], "password": PASSWORD}),
    )


def main():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    known = [f"known-{i}@example.com" for i in range(SAMPLES // 3 + 2)]
    if len(sys.argv) > 4 and sys.argv[4] == "register":
        for i in range(10):
            post(conn, "/api/v1/auth/register", {"email": f"warm-{i}@example.com", "password": PASSWORD})
        register_phase(conn, known)
        return
    for addr in known:
        status, data, _ = post(conn, "/api/v1/auth/register", {"email": addr, "password": PASSWORD})
        if status != 201:
            sys.exit(f"registration failed: {status} {data[:200]!r}")
    # Warm-up (connection, caches, hashing threads).
    for i in range(20):
        post(conn, "/api/v1/auth/login", {"email": f"warm-{i}@example.com", "password": "x" * 12})

    # Each known account gets at most 3 wrong passwords: below the lockout's 5 free failures,
    # so these are ordinary wrong-password answers (the locked case is compared separately).
    compare(
        conn,
        "login: unknown address vs known address + wrong password",
        lambda i: ("/api/v1/auth/login", {"email": f"nobody-{i}@example.com", "password": "wrong password 123"}),
        lambda i: ("/api/v1/auth/login", {"email": known[i % len(known)], "password": "wrong password 123"}),
    )
    locked = "locked@example.com"
    post(conn, "/api/v1/auth/register", {"email": locked, "password": PASSWORD})
    for _ in range(6):
        post(conn, "/api/v1/auth/login", {"email": locked, "password": "wrong password 123"})
    compare(
        conn,
        "login: unknown address vs locked account + correct password",
        lambda i: ("/api/v1/auth/login", {"email": f"nobody2-{i}@example.com", "password": PASSWORD}),
        lambda i: ("/api/v1/auth/login", {"email": locked, "password": PASSWORD}),
    )
    compare(
        conn,
        "password/forgot: unknown address vs known address",
        lambda i: ("/api/v1/auth/password/forgot", {"email": f"nobody3-{i}@example.com"}),
        lambda i: ("/api/v1/auth/password/forgot", {"email": known[i % len(known)]}),
    )


if __name__ == "__main__":
    main()

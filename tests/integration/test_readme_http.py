"""The README's HTTP section, walked: every row of its two tables is
read from README.md and checked against a running agent, so the README
cannot claim a status the agent does not give. One node is ready (and
the write leader), one is down; a third agent's default node is ready
and not the write leader, for the rows that ask for that."""

import os
import re
import socket

import pytest

from harness import FAST_AGENT, ROOT, Agent, free_port, node_section, read_until_close, wait_for

README = os.path.join(ROOT, "README.md")


def http_section():
    with open(README) as f:
        text = f.read()
    start = text.index("## HTTP (`option httpchk`)")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def table_rows(section, header):
    """The rows (lists of cells) of the markdown table whose header row starts with header."""
    lines = section.splitlines()
    i = next(n for n, l in enumerate(lines) if l.startswith(header))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def path_rows():
    rows = table_rows(http_section(), "| path |")
    assert len(rows) >= 6, rows
    return rows


def request_rows():
    rows = table_rows(http_section(), "| request |")
    assert len(rows) >= 6, rows
    return rows


def code(cell):
    m = re.search(r"\b([1-5]\d\d)\b", cell)
    return int(m.group(1)) if m else None


def send(port, raw, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_until_close(s, timeout)


def status_of(reply):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    assert m, reply[:200]
    head, _, body = reply.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length, head
    return int(m.group(1)), head, body, int(length.group(1))


@pytest.fixture(scope="module")
def agents(module_registry, plain_pg, module_password):
    dead = {"dsn": f"host=127.0.0.1 port={free_port()} dbname=app user=x", "flavor": "plain"}
    up = node_section(plain_pg, module_password, priority=1)
    both = Agent(module_registry, [("agent", FAST_AGENT), ("node.up", up), ("node.dead", dead)],
                 name="readme-both").start()
    only_dead = Agent(module_registry, [("agent", FAST_AGENT), ("node.dead", dead)],
                      name="readme-dead").start()
    spare = node_section(plain_pg, module_password, priority=2)
    spare_first = Agent(module_registry, [("agent", FAST_AGENT), ("node.spare", spare),
                                          ("node.up", up)], name="readme-spare").start()
    both.wait_state("up", "ready", 15)
    both.wait_state("dead", "down", 15)
    only_dead.wait_state("dead", "down", 15)
    spare_first.wait_state("spare", "ready", 15)
    wait_for(lambda: spare_first.status_json()["write_node"] == "up", 15, desc="leader up")
    return both, only_dead, spare_first


def paths_of(cell):
    return re.findall(r"`(/[^`]*)`", cell)


@pytest.mark.parametrize("row", path_rows(), ids=lambda r: r[0])
def test_path_table_row(agents, row):
    both, only_dead, spare_first = agents
    path_cell, ok_cell, else_cell = row
    not_leader = "not the write leader" in ok_cell
    for template in paths_of(path_cell):
        for method in ("GET", "HEAD", "OPTIONS"):
            for version in ("1.0", "1.1"):
                def ask(agent, node):
                    path = template.replace("NAME", node)
                    host = "Host: x\r\n" if version == "1.1" else ""
                    raw = f"{method} {path} HTTP/{version}\r\n{host}\r\n".encode()
                    status, head, body, length = status_of(send(agent.port, raw))
                    if method == "HEAD":
                        assert body == b"", (path, body)
                    else:
                        assert length == len(body), (path, head)
                    return status
                if not_leader:
                    # a ready node that does not lead passes, the leader does not
                    assert ask(spare_first, "spare") == 200, (method, template, version)
                    assert ask(both, "up") == code(else_cell), (method, template, version)
                else:
                    # the ready write leader: 200 on every other path
                    assert ask(both, "up") == 200, (method, template, version)
                if else_cell:
                    # the down node (by name, or as the default node)
                    target = both if "NAME" in template else only_dead
                    assert ask(target, "dead") == code(else_cell), (method, template, version)


def request_for(cell):
    """The raw bytes a row of the request table describes."""
    literal = re.match(r"`([^`]*)`", cell).group(1)
    if not literal.startswith(("GET ", "HEAD ", "OPTIONS ", "POST ", "BREW ", "PUT ")) \
            or "HTTP/" not in literal:
        return literal.encode() + b"\r\n\r\n"
    headers = "" if "without `Host`" in cell else "Host: x\r\n"
    if "two different `Content-Length`" in cell:
        headers += "Content-Length: 0\r\nContent-Length: 5\r\n"
    if "bare CR" in cell:
        headers += "X-Odd: a\rb\r\n"
    if "header block over 16 kB" in cell:
        headers += "".join(f"X-Pad-{i}: {'x' * 100}\r\n" for i in range(200))
    return f"{literal}\r\n{headers}\r\n".encode()


@pytest.mark.parametrize("row", request_rows(), ids=lambda r: r[0].replace("`", ""))
def test_request_table_row(agents, row):
    both = agents[0]
    request_cell, answer_cell = row
    want = code(answer_cell)
    assert want, row
    status, head, body, length = status_of(send(both.port, request_for(request_cell)))
    assert status == want, (row, head)
    assert length == len(body), head
    allow = re.search(r"`Allow: ([^`]*)`", answer_cell)
    if allow:
        assert re.search(rb"(?im)^allow: *" + re.escape(allow.group(1).encode()), head), head


def test_patroni_names_are_in_the_path_table():
    """Every Patroni endpoint the README lists beside its own is a path
    the walked table holds (and so is asked with GET, HEAD and OPTIONS)."""
    walked = {p for row in path_rows() for p in paths_of(row[0])}
    rows = table_rows(http_section(), "| Patroni endpoint |")
    listed = {p.split("?")[0] for row in rows for p in paths_of(row[0])}
    assert {"/primary", "/read-write", "/leader", "/replica", "/read-only", "/readiness",
            "/health", "/liveness"} <= listed, listed
    assert listed - {"/"} <= walked, listed - walked

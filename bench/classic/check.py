#!/usr/bin/python3
"""
The classic PgSQLBDRChecker check, reproduced for bench/run.sh only: the
baseline pgbdr-agent is compared against. Do not deploy it.

xinetd forks and execs this script for every single check, with the
client socket as stdin/stdout/stderr. Like the original it:
  - reads database.ini ([postgresql] section) with configparser;
  - opens a NEW psycopg2 connection (the original used a superuser);
  - runs SELECT node_status FROM bdr.bdr_nodes WHERE node_name = '<hostname>';
  - writes a hand-made HTTP reply whose Content-Length is wrong (it
    announces more bytes than it sends);
  - never reads the request (so closing with it unread may reset the
    connection);
  - sleeps 0.1 s before exiting, as the classic script did.

Usage (xinetd "server_args"): check.py [path/to/database.ini]
"""
import socket
import sys
import time
from configparser import ConfigParser

import psycopg2


def config(filename="/usr/bin/pgsqlcheck/database.ini", section="postgresql"):
    parser = ConfigParser()
    parser.read(filename)
    db = {}
    if parser.has_section(section):
        for key, value in parser.items(section):
            db[key] = value
    else:
        raise Exception("Section {0} not found in the {1} file".format(section, filename))
    return db


def node_status():
    conn = None
    try:
        conn = psycopg2.connect(**config(*sys.argv[1:2]))
        cur = conn.cursor()
        cur.execute("SELECT node_status FROM bdr.bdr_nodes WHERE node_name = '"
                    + socket.gethostname() + "'")
        row = cur.fetchone()
        cur.close()
        return row[0] if row else None
    except Exception:
        return None
    finally:
        if conn is not None:
            conn.close()


def main():
    if node_status() == "r":
        reply = ("HTTP/1.1 200 OK\r\n"
                 "Content-Type: text/plain\r\n"
                 "Connection: close\r\n"
                 "Content-Length: 40\r\n"
                 "\r\n"
                 "PostgreSQL BDR Node is running.\r\n")
    else:
        reply = ("HTTP/1.1 503 Service Unavailable\r\n"
                 "Content-Type: text/plain\r\n"
                 "Connection: close\r\n"
                 "Content-Length: 44\r\n"
                 "\r\n"
                 "PostgreSQL BDR Node is not running.\r\n")
    sys.stdout.write(reply)
    sys.stdout.flush()
    time.sleep(0.1)


if __name__ == "__main__":
    main()

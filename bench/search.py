"""Search latency at scale on PostgreSQL: `python bench/search.py [--messages 1000000]`.

Loads N messages into a throwaway PostgreSQL database (generate_series: one INSERT, no
Python per row), indexes them with the indexer's own SQL in bulk (chat.search.backends.postgres
REFRESH_SQL over every message, then every room's cursor at its last number, which is what
`catch_up` ends at), then times `chat.search.service.search` (the function the socket's
`search` runs in a store worker: readable rooms, the match, the page, ts_headline, the read
check) for one account in 900 public and 50 private rooms of 1,000. Reports p50/p99 per
query kind, with EXPLAIN (ANALYZE, BUFFERS) of the statements one search of each kind ran.
Also times the indexer itself (`catch_up`) on 20,000 fresh messages.

Text: 8-12 words per message from a 5,000-word vocabulary, word k drawn with probability
falling steeply with k (index = 5000 * U^3): `w0` is in about a third of the messages,
`w40` in a few percent; `needle*` words are planted in 20 messages each (rare).
"""
import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
ROOMS, PRIVATE_ROOMS, MEMBER_OF = 1000, 100, 50
NEEDLES = 50


def admin(sql):
    import psycopg
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def load(cursor, messages):
    started = time.perf_counter()
    cursor.execute("INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, email, is_staff,"
                   " is_active, date_joined) VALUES ('reader', '!', false, '', '', '', false, true, now()) RETURNING id")
    reader = cursor.fetchone()[0]
    cursor.execute(f"""INSERT INTO chat_room (name, created_at, last_seq, topic, kind, title, message_count,
                       last_active_at) SELECT 'room-' || i, now(), 0, '',
                       CASE WHEN i <= {PRIVATE_ROOMS} THEN 'private' ELSE 'public' END, '', 0, now()
                       FROM generate_series(1, {ROOMS}) i""")
    cursor.execute(f"""INSERT INTO chat_roommember (room_id, user_id, role, joined_at, last_read, read_count,
                       mentions, muted) SELECT id, %s, 'member', now(), 0, 0, 0, false FROM chat_room
                       WHERE name IN (SELECT 'room-' || i FROM generate_series(1, {MEMBER_OF}) i)""", [reader])
    cursor.execute("SELECT min(id) FROM chat_room")
    first_room = cursor.fetchone()[0]
    # one statement: each row's words come from a subquery that refers to the row (so it runs per row)
    cursor.execute(f"""
        INSERT INTO chat_message (room_id, seq, author, author_key, text, created_at, reply_user, reply_replies,
                                  replies, ordinal)
        SELECT {first_room} + g % {ROOMS}, g / {ROOMS} + 1, 'user' || (g % 300), 'n:user' || (g % 300),
               (SELECT string_agg('w' || floor(5000 * power(random(), 3))::int, ' ')
                  FROM generate_series(1, 8 + (g % 5)) k WHERE g >= 0),
               now() - make_interval(secs => ({messages} - g) * 2.0), '', 0, 0, g / {ROOMS} + 1
        FROM generate_series(0, {messages - 1}) g""")
    for n in range(NEEDLES):  # rare words, 20 messages each, spread over the rooms and time
        cursor.execute(f"""UPDATE chat_message SET text = text || ' needle{n}' WHERE id IN
                           (SELECT id FROM chat_message ORDER BY md5(id::text || '{n}') LIMIT 20)""")
    cursor.execute("""UPDATE chat_room r SET last_seq = m.last, message_count = m.last FROM
                      (SELECT room_id, max(seq) AS last FROM chat_message GROUP BY room_id) m WHERE m.room_id = r.id""")
    return reader, time.perf_counter() - started


def index_all(cursor):
    from django.conf import settings

    from chat.search.backends.postgres import REFRESH_SQL
    started = time.perf_counter()
    cursor.execute(REFRESH_SQL.replace("id = ANY(%s)", "TRUE"), [settings.CHAT_SEARCH_CONFIG])
    cursor.execute("INSERT INTO chat_search_roomcursor (room_id, seq) SELECT id, last_seq FROM chat_room")
    took = time.perf_counter() - started
    cursor.execute("VACUUM ANALYZE")
    return took


def time_indexer(count):
    """catch_up on `count` messages committed through the real commit path."""
    from chat import persistence
    from chat.search import indexer
    drafts = [persistence.Draft(f"room-{500 + i % 100}", "writer", None, f"fresh w{i % 700} w{i % 13} words {i}", None)
              for i in range(count)]
    for start in range(0, count, 200):
        persistence.commit_posts(drafts[start:start + 200])
    started = time.perf_counter()
    handled = indexer.catch_up_all(500)
    return handled, time.perf_counter() - started


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_queries(kinds, reader_id, rounds):
    from django.db import connection

    from chat.search import service
    from chat.search.query import parse_search
    results, explains = {}, {}
    for kind, texts in kinds.items():
        timings, counts = [], []
        for i in range(rounds):
            q = texts[i % len(texts)]
            query = parse_search({"q": q}, 200, 20, "reader")
            started = time.perf_counter()
            page = service.search(query, "reader", reader_id, f"u:{reader_id}")
            timings.append((time.perf_counter() - started) * 1000)
            counts.append(len(page["results"]))
        results[kind] = {"queries": texts, "rounds": rounds, "p50_ms": round(percentile(timings, 50), 2),
                         "p99_ms": round(percentile(timings, 99), 2), "max_ms": round(max(timings), 2),
                         "mean_ms": round(statistics.mean(timings), 2), "results_per_page": min(counts)}
        captured = []

        def capture(execute, sql, params, many, context):
            captured.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(capture):
            service.search(parse_search({"q": texts[0]}, 200, 20, "reader"), "reader", reader_id, f"u:{reader_id}")
        plans = []
        with connection.cursor() as cursor:
            for sql, params in captured:
                if "chat_search_entry" not in sql:
                    continue
                text = connection.ops.compose_sql(sql, params)
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plans.append({"sql": text, "plan": "\n".join(row[0] for row in cursor.fetchall())})
        explains[kind] = plans
    return results, explains


def matches(cursor, words):
    out = {}
    for word in words:
        cursor.execute("SELECT count(*) FROM chat_search_entry WHERE document @@ plainto_tsquery('simple', %s)", [word])
        out[word] = cursor.fetchone()[0]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=300, help="searches timed per query kind")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / f"{datetime.date.today()}-issue18-search"))
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()
    name = "chat_bench_search_" + uuid.uuid4().hex[:8]
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="settings")
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="settings")
        import django
        django.setup()
        from django.db import connection, transaction
        with transaction.atomic(), connection.cursor() as cursor:
            reader, load_secs = load(cursor, args.messages)
        print(f"loaded {args.messages:,} messages in {load_secs:.1f} s", flush=True)
        with connection.cursor() as cursor:
            index_secs = index_all(cursor)
            print(f"indexed them in {index_secs:.1f} s (one INSERT ... SELECT to_tsvector)", flush=True)
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('chat_search_entry')), "
                           "pg_size_pretty(pg_relation_size('chat_search_entry_document')), "
                           "pg_size_pretty(pg_total_relation_size('chat_message'))")
            sizes = dict(zip(("entry_table_total", "gin_index", "message_table_total"), cursor.fetchone()))
        handled, indexer_secs = time_indexer(20_000)
        print(f"catch_up indexed {handled:,} fresh messages in {indexer_secs:.2f} s", flush=True)
        rng = random.Random(7)
        kinds = {
            "common word (w0..w2)": ["w0", "w1", "w2"],
            "mid word (w40..w60)": [f"w{k}" for k in range(40, 61)],
            "rare word (needle*)": [f"needle{k}" for k in rng.sample(range(NEEDLES), 20)],
            "phrase (\"w0 w1\")": ['"w0 w1"', '"w1 w0"', '"w2 w0"'],
            "common word by relevance": ["w0", "w1"],
        }
        results, explains = {}, {}
        plain = {k: v for k, v in kinds.items() if "relevance" not in k}
        results, explains = run_queries(plain, reader, args.rounds)
        with connection.cursor() as cursor:
            counts = matches(cursor, ["w0", "w1", "w2", "w50", "needle1"])
        report = {"messages": args.messages, "rooms": ROOMS, "readable_rooms": ROOMS - PRIVATE_ROOMS + MEMBER_OF,
                  "load_secs": round(load_secs, 1), "bulk_index_secs": round(index_secs, 1),
                  "catch_up": {"messages": handled, "secs": round(indexer_secs, 2),
                               "per_sec": round(handled / indexer_secs)},
                  "sizes": sizes, "matching_messages": counts, "latency": results,
                  "config": "simple", "command": " ".join(["python", "bench/search.py", *sys.argv[1:]])}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "search.json").write_text(json.dumps({**report, "explain": explains}, indent=2))
        lines = [f"# Search latency, {args.messages:,} messages on PostgreSQL", "",
                 f"Command: `.venv/bin/python bench/search.py {' '.join(sys.argv[1:])}`", "",
                 f"One account reading {report['readable_rooms']} of {ROOMS} rooms; `chat.search.service.search`"
                 f" timed in-process, {args.rounds} searches per kind, page of 20, newest first.", "",
                 "| query | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|"]
        lines += [f"| {kind} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |" for kind, r in results.items()]
        lines += ["", f"Matching messages: {counts}", "",
                  f"Load {load_secs:.0f} s; bulk index {index_secs:.0f} s; sizes {sizes};"
                  f" `catch_up` {report['catch_up']['per_sec']:,} messages/s on fresh messages.", "", "## EXPLAIN ANALYZE", ""]
        for kind, plans in explains.items():
            lines += [f"### {kind}", ""]
            for plan in plans:
                lines += ["```", plan["sql"], "", plan["plan"],
                          "```", ""]
        (out / "search.md").write_text("\n".join(lines))
        print("\n".join(lines[:16]))
    finally:
        if args.keep:
            print("kept database", name)
        else:
            from django.db import connections
            connections.close_all()
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Helpers of bin/bench-contract (not a tool of its own; Debian's python3 and python3-yaml).

  bench-contract-data.py table-sql CONTRACT
      CREATE TABLE for the contract's table: its columns in order, each data_type as written,
      NOT NULL for not_null and key columns, the primary key. (The dead-letter table is made
      by `contract init --table T --create-table`, the product's own script.)

  bench-contract-data.py names CONTRACT
      The table, its dead-letter table and the ceiling's table <table>_ceiling, each quoted.

  bench-contract-data.py columns CONTRACT
      The table's column names, quoted, comma-separated (the column list of psql's \\copy).

  bench-contract-data.py text-columns CONTRACT
      The same names, each followed by " text" (the columns of an unconstrained staging table).

  bench-contract-data.py count-sum CONTRACT
      count("a") + count("b") + ... over the columns (non-NULL cells of a row set).

  bench-contract-data.py prepare CONTRACT MANIFEST RAW_DIR SET_DIR CLEAN_DIR EXTRA_NULL_RATE SEED
      For each CSV file gen wrote into RAW_DIR: SET_DIR/FILE is the pipeline's input (every row;
      in valid rows, cells of nullable columns that no check and no key names are blanked with
      probability EXTRA_NULL_RATE); CLEAN_DIR/FILE is the header and the valid rows of
      SET_DIR/FILE, byte for byte (psql \\copy's input). A row is valid when the manifest's
      invalid_lines does not name the physical line it starts on. Prints on stdout:
      "<valid rows> <invalid rows> <cells blanked>".
"""
import csv
import io
import json
import os
import random
import sys

import yaml


def load_contract(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    columns = doc["columns"]
    key = list(doc.get("primary_key") or [])
    for c in columns:
        if "primary_key" in constraint_names(c) and c["name"] not in key:
            key.append(c["name"])
    return doc, columns, key


def constraint_names(column):
    names = []
    for c in column.get("constraints") or []:
        names.append(c["type"] if isinstance(c, dict) else c)
    return names


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_table(name):
    return ".".join(quote_ident(part) for part in name.split(".", 1))


def table_sql(path):
    doc, columns, key = load_contract(path)
    defs = []
    for c in columns:
        not_null = "not_null" in constraint_names(c) or c["name"] in key
        defs.append(f"    {quote_ident(c['name'])} {c['data_type']}" + (" NOT NULL" if not_null else ""))
    if key:
        defs.append("    PRIMARY KEY (" + ", ".join(quote_ident(k) for k in key) + ")")
    print(f"CREATE TABLE {quote_table(doc['table'])} (\n" + ",\n".join(defs) + "\n);")


def names(path):
    doc, _, _ = load_contract(path)
    table = str(doc["table"])
    if "." not in table:
        table = "public." + table
    dead = str(doc.get("dead_letter_table") or table.split(".", 1)[1] + "_bad_records")
    if "." not in dead:
        dead = table.split(".", 1)[0] + "." + dead
    print(quote_table(table), quote_table(dead), quote_table(table + "_ceiling"))


def column_list(path, suffix=""):
    _, columns, _ = load_contract(path)
    print(", ".join(quote_ident(c["name"]) + suffix for c in columns))


def null_count_sum(path):
    _, columns, _ = load_contract(path)
    print(" + ".join(f"count({quote_ident(c['name'])})" for c in columns))


def blankable(doc, columns, key):
    """Indexes of the columns whose cell may be blanked in a valid row without changing validity."""
    in_checks = set()
    for check in doc.get("checks") or []:
        for side in ("when", "require"):
            if isinstance(check.get(side), dict) and "column" in check[side]:
                in_checks.add(check[side]["column"])
    file_nulls = doc.get("null_values", [""])
    out = []
    for i, c in enumerate(columns):
        nulls = c.get("null_values", file_nulls)
        if "not_null" in constraint_names(c) or c["name"] in key or c["name"] in in_checks:
            continue
        if "" not in [str(n) for n in nulls]:
            continue
        out.append(i)
    return out


def records(data):
    """(first physical line, raw record bytes) for each CSV record, header included.

    A record goes on over line breaks while its count of double quotes is odd (RFC 4180)."""
    line_no = 0
    start = None
    parts = []
    quotes = 0
    for line in data.splitlines(keepends=True):
        line_no += 1
        if start is None:
            start = line_no
        parts.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield start, b"".join(parts)
            start, parts, quotes = None, [], 0
    if parts:
        yield start, b"".join(parts)


def prepare(contract, manifest, raw_dir, set_dir, clean_dir, rate, seed):
    doc, columns, key = load_contract(contract)
    targets = blankable(doc, columns, key)
    invalid_lines = {}
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            entry = json.loads(line)
            name = os.path.basename(entry["file"])
            invalid_lines[name] = {int(x["line"]) for x in entry.get("invalid_lines", [])}
    rng = random.Random(seed)
    valid = invalid = blanked = 0
    for name in sorted(os.listdir(raw_dir)):
        if not name.endswith(".csv") or name.startswith("."):
            continue
        if name not in invalid_lines:
            sys.exit(f"bench-contract-data: {name} is not in the manifest")
        bad = invalid_lines[name]
        with open(os.path.join(raw_dir, name), "rb") as f:
            data = f.read()
        out_set = io.BytesIO()
        out_clean = io.BytesIO()
        first = True
        for start, raw in records(data):
            if first:  # the header
                out_set.write(raw)
                out_clean.write(raw)
                first = False
                continue
            if start in bad:
                invalid += 1
                out_set.write(raw)
                continue
            valid += 1
            chosen = [i for i in targets if rng.random() < rate]
            if chosen:
                ending = b"\r\n" if raw.endswith(b"\r\n") else b"\n"
                text = raw.decode("utf-8")
                fields = next(csv.reader([text[: -len(ending)]], strict=True))
                if len(fields) != len(columns):
                    sys.exit(f"bench-contract-data: {name}:{start}: {len(fields)} fields in a valid row")
                changed = False
                for i in chosen:
                    if fields[i] != "":
                        fields[i] = ""
                        blanked += 1
                        changed = True
                if changed:
                    buf = io.StringIO()
                    csv.writer(buf, lineterminator=ending.decode()).writerow(fields)
                    raw = buf.getvalue().encode("utf-8")
            out_set.write(raw)
            out_clean.write(raw)
        with open(os.path.join(set_dir, name), "wb") as f:
            f.write(out_set.getvalue())
        with open(os.path.join(clean_dir, name), "wb") as f:
            f.write(out_clean.getvalue())
    print(valid, invalid, blanked)


def main(argv):
    if len(argv) >= 2 and argv[0] == "table-sql":
        table_sql(argv[1])
    elif len(argv) >= 2 and argv[0] == "names":
        names(argv[1])
    elif len(argv) >= 2 and argv[0] == "columns":
        column_list(argv[1])
    elif len(argv) >= 2 and argv[0] == "text-columns":
        column_list(argv[1], " text")
    elif len(argv) >= 2 and argv[0] == "count-sum":
        null_count_sum(argv[1])
    elif len(argv) == 8 and argv[0] == "prepare":
        prepare(argv[1], argv[2], argv[3], argv[4], argv[5], float(argv[6]), int(argv[7]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/<target>/ from the API reference.

decode_entity: each entity's reference example rows as JSON Lines, plus hand-made hostile
lines; api_bodies: the getAll and add response examples and error bodies; frame_lines: a
few framing edge cases. Input layouts are those the targets document (leading selector
bytes). Run from anywhere: python3 fuzz/make-seeds.py [reference dir].
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, "..", "shared", "reference", "mews-connector-api")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def entity_order():
    """Schema files in the order schema::all() lists them (the entity selector's order)."""
    text = open(os.path.join(ROOT, "src", "schema", "mod.rs")).read()
    block = text[text.index("const SCHEMA_FILES"):]
    block = block[:block.index("];")]
    return re.findall(r'"([a-z_]+\.json)"', block)


def code_blocks(text):
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```javascript"):
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            yield i, "\n".join(lines[i + 1:j])
            i = j
        i += 1


def reference_rows(schema):
    """The example rows shown in the response example before the entity's section."""
    ref = schema["reference"]
    text = open(os.path.join(REF, ref["file"])).read()
    lines = text.split("\n")
    heading = next(i for i, l in enumerate(lines)
                   if l.startswith("#") and l.lstrip("#").strip() == ref["section"])
    rows = []
    for start, block in code_blocks(text):
        if start > heading:
            break
        try:
            value = json.loads(block)
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        for v in value.values():
            if isinstance(v, list) and v and all(isinstance(i, dict) and "Id" in i for i in v):
                rows = v
                break
    return rows


SAMPLE = {"string": "x", "integer": 7, "decimal": 12.345, "boolean": True,
          "date": "2024-01-31", "timestamp": "2024-01-31T10:00:00Z", "json": {"k": [1]}}


def sample_row(schema):
    """A row with a plain value for each top-level property, for entities the reference
    shows no example of."""
    row = {}
    for p in schema["properties"]:
        kind = p["type"].split(":")[0]
        if kind in SAMPLE:
            row[p["name"]] = SAMPLE[kind]
        elif kind == "enum":
            row[p["name"]] = "Unknown"
    row["Id"] = "sample"
    return [row]


def write(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def jsonl(rows):
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)


HOSTILE = [
    b'{"Id":"a","Id":"b"}',
    b'{"Id":"x","Unknown":{"Deep":[1,2,{"x":null}]},"Other":"\\u00e9\\ud83d\\ude00"}',
    b'{"Id":"x","Notes":"\\ud800"}',
    b'{"Id":"x"} trailing',
    b'[1,2,3]',
    b'{"Id":' + b'[' * 200 + b']' * 200 + b'}',
    b'{"Id":"x","Extra":' + b'{"a":' * 200 + b'1' + b'}' * 200 + b'}',
    b'{"Id":"x","UnitCount":99999999999999999999,"CreatedUtc":"2023-02-29T25:61:00Z"}',
    b'{"Id":"x","Amount":{"GrossValue":1e400,"NetValue":-0.0000000001}}',
    b'\xef\xbb\xbf{"Id":"bom"}\r\n\r\n   \n{"Id":"crlf"}\r\n{"Id":"last"}',
    b'{"Id":"\xff\xfe"}',
]


def main():
    for index, file in enumerate(entity_order()):
        schema = json.load(open(os.path.join(ROOT, "schemas", file)))
        rows = reference_rows(schema) or sample_row(schema)
        table = schema["table"]
        if rows:
            write("decode_entity", f"{table}-reference", bytes([index, 0]) + jsonl(rows))
            # The same with a small line limit and odd chunking.
            write("decode_entity", f"{table}-reference-limit",
                  bytes([index, 0x80 | 40]) + jsonl(rows))
        for n, line in enumerate(HOSTILE):
            write("decode_entity", f"{table}-hostile-{n}", bytes([index, 7]) + line + b"\n")

    text = open(os.path.join(REF, "operations", "exports.md")).read()
    for start, block in code_blocks(text):
        value = json.loads(block)
        body = json.dumps(value, separators=(",", ":")).encode()
        if "Exports" in value:
            write("api_bodies", "get-all-reference", b"\x00" + body)
            write("api_bodies", "get-all-reference-pretty", b"\x00" + block.encode())
        elif "Export" in value:
            write("api_bodies", "add-reference", b"\x01" + body)
    write("api_bodies", "get-all-unknown-status",
          b'\x00{"Exports":[{"Id":"x","Status":"Archived","EntityType":"Company",'
          b'"Scope":null,"Files":[],"ExpiresUtc":null,"Filters":null}]}')
    write("api_bodies", "error-mews", b'\x02{"Message":"Invalid EntityType.",'
          b'"RequestId":"req-42","Details":null}')
    write("api_bodies", "error-secret", b'\x02{"Message":"token SecretToken is wrong"}')
    write("api_bodies", "error-html",
          b'\x02<html>\n<body>502 Bad Gateway SecretToken</body></html>')
    write("api_bodies", "error-empty", b"\x02")

    write("frame_lines", "jsonl", b"\xff\x10" + b'{"a":1}\n{"b":2}\n')
    write("frame_lines", "crlf-bom-blank", b"\x02\x03\xef\xbb\xbf{}\r\n\r\n \t\n{}\r\nx")
    write("frame_lines", "oversized", b"\x01\x00" + b"x" * 2000 + b"\r\nab\n" + b"y" * 9)


main()

#!/usr/bin/env bash
# End-to-end benchmark: mews-etl against DuckDB and pyarrow on the same JSON Lines files.
#
# Usage: benches/compare.sh            (from any directory)
#
# Environment (all optional):
#   SIZE_MIB=1024          size of the generated OrderItem and Reservation files, MiB
#   RUNS=3                 runs of each contender; medians are reported
#   SWEEP_MIB="100 1024 4096"   file sizes of the OrderItem `convert` sweep, unpartitioned and
#                          with the default partitioning (RUNS runs each; empty to skip)
#   WORK_DIR=target/compare     scratch directory, deleted and recreated on every run
#                          (relative paths are taken from the repository root)
#   CARGO_TARGET_DIR       where cargo builds (default: target)
#   PYTHON=python3         interpreter that gets `pip install duckdb pyarrow`
#
# Steps: builds the release binary and examples/generate.rs; pip-installs duckdb and pyarrow;
# generates deterministic Realistic rows (seed 42) of OrderItem and Reservation; runs back to
# back, RUNS times each, measuring wall, CPU (user+sys) and peak RSS with /usr/bin/time:
#   - mews-etl convert --partition-by none (ZSTD) and convert with the entity's partitioning;
#   - DuckDB (Python package, SET threads=2): read_json with the explicit column types of
#     `mews-etl schema E --format duckdb` (lineage columns dropped), COPY to ZSTD Parquet;
#   - pyarrow: pyarrow.json.read_json (explicit schema when it parses, else inferred) and
#     pyarrow.parquet.write_table(compression='zstd');
#   - mews-etl run --demo (embedded mock over loopback, same size of export as the file),
#     each run paired with a convert of the file just before it;
#   - the size sweep.
# Prints a markdown report and saves it as $WORK_DIR/report.md (raw numbers in results.tsv).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
SWEEP_MIB=${SWEEP_MIB-100 1024 4096}
WORK_DIR=${WORK_DIR:-target/compare}
PYTHON=${PYTHON:-python3}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ENTITIES=(OrderItem Reservation)

case $WORK_DIR in
    /*) WORK=$WORK_DIR ;;
    *) WORK=$ROOT/$WORK_DIR ;;
esac
if [[ -z $WORK_DIR || $WORK == / || $WORK == "$ROOT" || $WORK == "$ROOT/" ]]; then
    echo "refusing to use $WORK as the work directory" >&2
    exit 2
fi
for n in "$SIZE_MIB" "$RUNS" $SWEEP_MIB; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "SIZE_MIB, RUNS and SWEEP_MIB must be positive whole numbers, got '$n'" >&2
        exit 2
    fi
done
if [[ ! -x /usr/bin/time ]]; then
    echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2
    exit 2
fi

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- build -------------------------------------------------------------------------------
log "building release binary and generator"
cargo build --release --quiet
cargo build --release --quiet --example generate
ETL=$TARGET/release/mews-etl
GEN=$TARGET/release/examples/generate

# --- tools -------------------------------------------------------------------------------
log "installing duckdb and pyarrow"
"$PYTHON" -m pip install --quiet --disable-pip-version-check duckdb pyarrow
TOOLS=$("$PYTHON" -c 'import duckdb, pyarrow; print(f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}")')

rm -rf -- "$WORK"
mkdir -p -- "$WORK/data" "$WORK/out" "$WORK/logs"
RESULTS=$WORK/results.tsv
printf 'section\tentity\tcontender\trun\twall_s\tuser_s\tsys_s\tmaxrss_kib\tinput_bytes\tload_s\n' >"$RESULTS"

# --- python helpers ----------------------------------------------------------------------
# Parses a DuckDB CREATE TABLE (stdin) into {column: type} JSON, lineage (_-prefixed) dropped.
read -r -d '' PARSE_COLUMNS_PY <<'PY' || true
import json, sys
# The statement after its leading comment lines (how to load the table).
sql = "\n".join(l for l in sys.stdin.read().splitlines() if not l.lstrip().startswith("--"))
body = sql[sql.index("(") + 1 : sql.rindex(")")]
items, depth, cur = [], 0, ""
for ch in body:
    if ch == "(":
        depth += 1
    elif ch == ")":
        depth -= 1
    if ch == "," and depth == 0:
        items.append(cur)
        cur = ""
    else:
        cur += ch
items.append(cur)
cols = {}
for item in items:
    item = item.strip()
    if not item:
        continue
    if item.startswith('"'):
        end = item.index('"', 1)
        name, typ = item[1:end], item[end + 1 :].strip()
    else:
        name, _, typ = item.partition(" ")
    if not name.startswith("_"):
        cols[name] = typ.strip()
json.dump(cols, sys.stdout)
PY

# DuckDB contender: argv = input.jsonl columns.json out.parquet
read -r -d '' DUCKDB_PY <<'PY' || true
import json, sys, duckdb
src, cols_file, out = sys.argv[1:4]
cols = json.load(open(cols_file))
lit = lambda s: "'" + s.replace("'", "''") + "'"
struct = "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in cols.items()) + "}"
con = duckdb.connect()
con.execute("SET threads=2")
con.execute(
    f"COPY (SELECT * FROM read_json({lit(src)}, format='newline_delimited', "
    f"columns={struct})) TO {lit(out)} (FORMAT parquet, COMPRESSION zstd)"
)
PY

# pyarrow contender: argv = input.jsonl columns.json out.parquet explicit|inferred
read -r -d '' PYARROW_PY <<'PY' || true
import json, re, sys
import pyarrow as pa, pyarrow.json as pj, pyarrow.parquet as pq

def split_top(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out

def arrow_type(t):
    t = t.strip()
    if t.endswith("[]"):
        return pa.list_(arrow_type(t[:-2]))
    u = t.upper()
    if u.startswith("STRUCT("):
        fields = []
        for f in split_top(t[t.index("(") + 1 : t.rindex(")")]):
            if f.startswith('"'):
                end = f.index('"', 1)
                name, ft = f[1:end], f[end + 1 :]
            else:
                name, _, ft = f.partition(" ")
            fields.append(pa.field(name, arrow_type(ft)))
        return pa.struct(fields)
    m = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", u)
    if m:
        return pa.decimal128(int(m[1]), int(m[2]))
    simple = {
        "VARCHAR": pa.string(), "BOOLEAN": pa.bool_(), "BIGINT": pa.int64(),
        "INTEGER": pa.int32(), "SMALLINT": pa.int16(), "DOUBLE": pa.float64(),
        "FLOAT": pa.float32(), "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us"),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
        "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
    }
    return simple[u]

src, cols_file, out, mode = sys.argv[1:5]
if mode == "explicit":
    cols = json.load(open(cols_file))
    schema = pa.schema([pa.field(k, arrow_type(v)) for k, v in cols.items()])
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
else:
    parse = pj.ParseOptions()
table = pj.read_json(src, parse_options=parse)
pq.write_table(table, out, compression="zstd")
print(f"rows={table.num_rows}")
PY

# --- measuring ---------------------------------------------------------------------------
# measure SECTION ENTITY CONTENDER RUN INPUT_BYTES OUTDIR -- COMMAND...
# Runs COMMAND with a fresh OUTDIR, records wall/user/sys/maxrss; stops the script on failure.
measure() {
    local section=$1 entity=$2 contender=$3 run=$4 bytes=$5 outdir=$6
    shift 7
    local tag="$section-$entity-$contender-$run"
    local timing=$WORK/logs/$tag.time
    rm -rf -- "$outdir"
    mkdir -p -- "$outdir"
    sync
    if ! /usr/bin/time -f '%e %U %S %M' -o "$timing" "$@" >"$WORK/logs/$tag.log" 2>&1; then
        log "FAILED: $* (see $WORK/logs/$tag.log)"
        tail -n 20 "$WORK/logs/$tag.log" >&2
        exit 1
    fi
    local wall user sys rss load
    read -r wall user sys rss <"$timing"
    # mews-etl's summary row: the seconds column (just before the status) is the load alone
    # (download or read, decode, write, commit), without waiting for the export.
    # For `run`, whose summary counts the wait for the export too, the log's `load_seconds`.
    load=$(grep -o '"load_seconds":[0-9.]*' "$WORK/logs/$tag.log" | tail -n 1 | cut -d: -f2 || true)
    if [[ -z $load ]]; then
        load=$(awk -v e="$entity" '$1 == e { for (i = 2; i <= NF; i++) if ($i == "committed") print $(i - 1) }' \
            "$WORK/logs/$tag.log" | tail -n 1 || true)
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$section" "$entity" "$contender" "$run" "$wall" "$user" "$sys" "$rss" "$bytes" "$load" >>"$RESULTS"
    log "$tag: wall ${wall}s cpu $(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')s rss $((rss / 1024)) MiB"
    rm -rf -- "$outdir"
}

file_bytes() { stat -c %s -- "$1"; }

# --- data --------------------------------------------------------------------------------
for e in "${ENTITIES[@]}"; do
    log "generating $SIZE_MIB MiB of $e"
    "$GEN" "$e" "$SIZE_MIB" "$WORK/data/$e.jsonl" >&2
    "$ETL" schema "$e" --format duckdb | "$PYTHON" -c "$PARSE_COLUMNS_PY" >"$WORK/data/$e.columns.json"
done

# pyarrow: explicit schema if it parses a sample of each entity, else inferred.
declare -A PA_MODE
for e in "${ENTITIES[@]}"; do
    head -n 2000 "$WORK/data/$e.jsonl" >"$WORK/data/$e.sample.jsonl"
    if "$PYTHON" -c "$PYARROW_PY" "$WORK/data/$e.sample.jsonl" "$WORK/data/$e.columns.json" \
        "$WORK/out/probe.parquet" explicit >"$WORK/logs/pyarrow-probe-$e.log" 2>&1; then
        PA_MODE[$e]=explicit
    else
        PA_MODE[$e]=inferred
        log "pyarrow rejects the explicit $e schema (see logs/pyarrow-probe-$e.log); using inference"
    fi
    rm -f -- "$WORK/data/$e.sample.jsonl" "$WORK/out/probe.parquet"
done

# --- contenders, back to back --------------------------------------------------------------
OUT=$WORK/out/run
for e in "${ENTITIES[@]}"; do
    f=$WORK/data/$e.jsonl
    bytes=$(file_bytes "$f")
    cat -- "$f" >/dev/null # warm the page cache equally for everyone
    for ((r = 1; r <= RUNS; r++)); do
        measure main "$e" "mews-etl convert, --partition-by none" "$r" "$bytes" "$OUT" -- \
            "$ETL" convert --entity "$e" --out "$OUT" --partition-by none "$f"
        measure main "$e" "mews-etl convert, default partitioning" "$r" "$bytes" "$OUT" -- \
            "$ETL" convert --entity "$e" --out "$OUT" "$f"
        measure main "$e" "DuckDB (threads=2)" "$r" "$bytes" "$OUT" -- \
            "$PYTHON" -c "$DUCKDB_PY" "$f" "$WORK/data/$e.columns.json" "$OUT/x.parquet"
        measure main "$e" "pyarrow (${PA_MODE[$e]} schema)" "$r" "$bytes" "$OUT" -- \
            "$PYTHON" -c "$PYARROW_PY" "$f" "$WORK/data/$e.columns.json" "$OUT/x.parquet" "${PA_MODE[$e]}"
    done
done

# --- run --demo: the same size of export through the embedded mock ----------------------
f=$WORK/data/OrderItem.jsonl
bytes=$(file_bytes "$f")
lines=$(wc -l <"$f")
lines=${lines// /}
# rows ≈ size / average line length of the generated file, i.e. the file's own row count
demo_rows=$lines
log "run --demo with $demo_rows OrderItem rows (≈ $SIZE_MIB MiB)"
# Each run --demo is paired with a convert of the file just before it: the machine drifts
# between series, and the ratio is of two loads measured seconds apart, not minutes.
for ((r = 1; r <= RUNS; r++)); do
    measure demo OrderItem "mews-etl convert, default partitioning" "$r" "$bytes" "$OUT" -- \
        "$ETL" convert --entity OrderItem --out "$OUT" "$f"
    measure demo OrderItem "mews-etl run --demo" "$r" "$bytes" "$OUT" -- \
        "$ETL" --log-format json run --demo --entity OrderItem --demo-rows "$demo_rows" --out "$OUT"
done

# --- size sweep ----------------------------------------------------------------------------
for mib in $SWEEP_MIB; do
    sf=$WORK/data/sweep-$mib.jsonl
    log "sweep: generating $mib MiB of OrderItem"
    "$GEN" OrderItem "$mib" "$sf" >&2
    cat -- "$sf" >/dev/null
    for ((r = 1; r <= RUNS; r++)); do
        measure sweep OrderItem "--partition-by none" "$mib-$r" "$(file_bytes "$sf")" "$OUT" -- \
            "$ETL" convert --entity OrderItem --out "$OUT" --partition-by none "$sf"
        measure sweep OrderItem "default partitioning" "$mib-$r" "$(file_bytes "$sf")" "$OUT" -- \
            "$ETL" convert --entity OrderItem --out "$OUT" "$sf"
    done
    rm -f -- "$sf"
done

# --- report ------------------------------------------------------------------------------
read -r -d '' REPORT_PY <<'PY' || true
import csv, statistics, sys
results, size_mib, runs, demo_rows, tools = sys.argv[1:6]
rows = list(csv.DictReader(open(results), delimiter="\t"))
med = lambda xs: statistics.median(xs)
def agg(section, entity, contender):
    rs = [r for r in rows if (r["section"], r["entity"], r["contender"]) == (section, entity, contender)]
    return {
        "wall": med(float(r["wall_s"]) for r in rs),
        "cpu": med(float(r["user_s"]) + float(r["sys_s"]) for r in rs),
        "rss": med(int(r["maxrss_kib"]) for r in rs) / 1024,
        "bytes": int(rs[0]["input_bytes"]),
        "load": med(float(r["load_s"]) for r in rs) if all(r["load_s"] for r in rs) else None,
    }
out = []
p = out.append
p(f"Medians of {runs} runs; input {size_mib} MiB per entity; {tools}.\n")
p("| entity | contender | wall s | CPU s (user+sys) | peak RSS MiB | input MiB/s | wall ÷ DuckDB |")
p("| --- | --- | --- | --- | --- | --- | --- |")
seen = []
for r in rows:
    key = (r["entity"], r["contender"])
    if r["section"] == "main" and key not in seen:
        seen.append(key)
for entity in dict.fromkeys(e for e, _ in seen):
    duck = next(agg("main", entity, c) for e, c in seen if e == entity and c.startswith("DuckDB"))
    for e, c in seen:
        if e != entity:
            continue
        a = agg("main", e, c)
        p(f"| {e} | {c} | {a['wall']:.2f} | {a['cpu']:.2f} | {a['rss']:.0f} | "
          f"{a['bytes'] / 2**20 / a['wall']:.0f} | {a['wall'] / duck['wall']:.2f}× |")
demo = [r for r in rows if r["section"] == "demo"]
if demo:
    d = agg("demo", "OrderItem", "mews-etl run --demo")
    conv = agg("demo", "OrderItem", "mews-etl convert, default partitioning")
    by_run = {}
    for r in demo:
        by_run.setdefault(r["run"], {})[r["contender"]] = r
    pairs = [
        float(x["mews-etl run --demo"]["load_s"]) / float(x["mews-etl convert, default partitioning"]["load_s"])
        for x in by_run.values()
        if len(x) == 2 and all(v["load_s"] for v in x.values())
        and float(x["mews-etl convert, default partitioning"]["load_s"]) > 0
    ]
    p("")
    p(f"`run --demo --entity OrderItem --demo-rows {demo_rows}` (export ≈ the {size_mib} MiB file, "
      "served by the embedded mock over loopback; the mock generates the data in the same process, "
      "before the export reports Success), each run paired with a `convert` of the file just "
      "before it. *Load s* is the load alone — download or read, decode, "
      "write and commit, without the wait for the export (`convert`'s summary seconds; `run`'s "
      "`load_seconds` log field):\n")
    p("| command | wall s | CPU s (user+sys) | peak RSS MiB | load s | load ÷ convert's load |")
    p("| --- | --- | --- | --- | --- | --- |")
    fmt = lambda x: "–" if x is None else f"{x:.2f}"
    p(f"| convert (default partitioning) | {conv['wall']:.2f} | {conv['cpu']:.2f} | {conv['rss']:.0f} | {fmt(conv['load'])} | 1 |")
    ratio = "–" if not pairs else (
        f"{med(pairs):.2f}× (median of the {len(pairs)} paired runs: "
        + ", ".join(f"{x:.2f}" for x in sorted(pairs)) + ")")
    p(f"| run --demo | {d['wall']:.2f} | {d['cpu']:.2f} | {d['rss']:.0f} | {fmt(d['load'])} | {ratio} |")
sweep = [r for r in rows if r["section"] == "sweep"]
if sweep:
    p("")
    p(f"Size sweep, `convert --entity OrderItem`, medians of {runs} runs; peak RSS also as a "
      "multiple of the smallest file's:\n")
    p("| layout | input MiB | wall s | s per GiB | peak RSS MiB | RSS ÷ smallest |")
    p("| --- | --- | --- | --- | --- | --- |")
    for layout in dict.fromkeys(r["contender"] for r in sweep):
        sizes = sorted({int(r["input_bytes"]) for r in sweep if r["contender"] == layout})
        first = None
        for size in sizes:
            rs = [r for r in sweep if r["contender"] == layout and int(r["input_bytes"]) == size]
            wall = med(float(r["wall_s"]) for r in rs)
            rss = med(int(r["maxrss_kib"]) for r in rs) / 1024
            first = first or rss
            p(f"| {layout} | {size / 2**20:.0f} | {wall:.2f} | {wall / (size / 2**30):.2f} | "
              f"{rss:.0f} | {rss / first:.2f}× |")
print("\n".join(out))
PY

"$PYTHON" -c "$REPORT_PY" "$RESULTS" "$SIZE_MIB" "$RUNS" "$demo_rows" "$TOOLS" | tee "$WORK/report.md"
log "report saved to $WORK/report.md"

//! The README's generated sections stay in step with the code: the type table and the
//! table of default partitionings derive from the schema module, not from hand-kept text. `UPDATE_README=1 cargo test --test readme`
//! rewrites them.

use std::path::Path;

fn replace_between(text: &str, name: &str, body: &str) -> String {
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let a = text
        .find(&start)
        .unwrap_or_else(|| panic!("README has no {start:?}"))
        + start.len();
    let b = text[a..]
        .find(&end)
        .unwrap_or_else(|| panic!("README has no {end:?}"))
        + a;
    format!("{}{}{}", &text[..a], body, &text[b..])
}

/// Checks the README's section `name` against `body`, or rewrites it under `UPDATE_README`.
fn check_section(name: &str, body: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let updated = replace_between(&text, name, body);
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &updated).unwrap();
        return;
    }
    assert!(
        text == updated,
        "README's {name} is stale: run UPDATE_README=1 cargo test --test readme"
    );
}

#[test]
fn type_table_matches_the_schema_module() {
    check_section("type-table", &mews_etl::schema::type_table_markdown());
}

#[test]
fn partition_table_matches_the_schema_module() {
    check_section(
        "partition-table",
        &mews_etl::schema::partition_table_markdown(),
    );
}

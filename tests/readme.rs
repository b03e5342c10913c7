//! The README's generated sections stay in step with the code: the type table derives from
//! the schema module, not from hand-kept text. `UPDATE_README=1 cargo test --test readme`
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

#[test]
fn type_table_matches_the_schema_module() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let updated = replace_between(
        &text,
        "type-table",
        &mews_etl::schema::type_table_markdown(),
    );
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &updated).unwrap();
        return;
    }
    assert!(
        text == updated,
        "README's type table is stale: run UPDATE_README=1 cargo test --test readme"
    );
}

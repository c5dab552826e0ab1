//! The UI's TypeScript types are generated from the real protocol and core types (their `ts`
//! feature) and the shell's own types (`src-tauri/ui_types.rs`). This test fails when
//! `ui/src/lib/bindings/papo.ts` is not what they generate (run with `PAPO_BLESS=1` to rewrite
//! it), so the UI cannot drift from what the shell sends.

use papo_app::ui_types as ui;

const PATH: &str = "ui/src/lib/bindings/papo.ts";

#[test]
fn typescript_bindings_are_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
    let fresh = ui::typescript();
    if std::env::var("PAPO_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
    }
    // Blessing rewrites the file, and the comparison below still runs: this test never
    // passes without checking.
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{PATH} is stale: run `PAPO_BLESS=1 cargo test --test bindings` and commit it"
    );
}

/// Every type a generated declaration refers to is itself generated: no dangling name in the
/// TypeScript file, whatever types are added later.
#[test]
fn every_type_the_bindings_name_is_exported() {
    let ts = ui::typescript();
    let declared: std::collections::BTreeSet<&str> = ts
        .lines()
        .filter_map(|l| l.strip_prefix("export type "))
        .filter_map(|l| l.split([' ', '<']).next())
        .collect();
    let builtin = ["Array", "Record", "Partial"];
    for line in ts.lines().filter(|l| l.starts_with("export type ")) {
        let body = line.split_once('=').map(|(_, b)| b).unwrap_or("");
        let mut word = String::new();
        let mut in_string = false;
        for c in body.chars().chain(std::iter::once(' ')) {
            if c == '"' {
                in_string = !in_string;
                word.clear();
                continue;
            }
            if !in_string && (c.is_ascii_alphanumeric() || c == '_') {
                word.push(c);
                continue;
            }
            let is_type = word.chars().next().is_some_and(|f| f.is_ascii_uppercase());
            if !in_string && is_type && c != ':' && c != '?' {
                assert!(
                    declared.contains(word.as_str()) || builtin.contains(&word.as_str()),
                    "{word} is used in `{line}` but not exported"
                );
            }
            word.clear();
        }
    }
    assert!(
        declared.len() >= 40,
        "only {} types exported",
        declared.len()
    );
}

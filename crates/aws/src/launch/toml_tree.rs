//! A TOML document as a plain tree, read from text with `toml_edit`'s parser and written back by
//! [`TomlTree::render`]. Bottlerocket's user data is merged in this form: the tree is easy to
//! edit by path, and rendering it ourselves keeps the dependency to the parser alone.
//!
//! Keys are kept sorted (TOML gives key order no meaning); comments and formatting of the user's
//! document are not kept. Arrays of tables are written as arrays of inline tables, which parse
//! to the same values.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::Value;
use toml_edit::{DocumentMut, Item};

/// One TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum TomlValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// An offset or local date-time, date or time, in its TOML text form.
    Datetime(String),
    Array(Vec<TomlValue>),
    Table(TomlTree),
}

/// A TOML table: the document root or any table in it.
pub type TomlTree = BTreeMap<String, TomlValue>;

/// Parses `text` as a TOML document.
pub fn parse(text: &str) -> Result<TomlTree, String> {
    let document: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    Ok(table_from_items(document.as_table().iter()))
}

fn table_from_items<'a>(items: impl Iterator<Item = (&'a str, &'a Item)>) -> TomlTree {
    items
        .filter_map(|(key, item)| Some((key.to_owned(), from_item(item)?)))
        .collect()
}

fn from_item(item: &Item) -> Option<TomlValue> {
    match item {
        Item::None => None,
        Item::Value(value) => Some(from_value(value)),
        Item::Table(table) => Some(TomlValue::Table(table_from_items(table.iter()))),
        Item::ArrayOfTables(tables) => Some(TomlValue::Array(
            tables
                .iter()
                .map(|table| TomlValue::Table(table_from_items(table.iter())))
                .collect(),
        )),
    }
}

fn from_value(value: &toml_edit::Value) -> TomlValue {
    match value {
        toml_edit::Value::String(s) => TomlValue::String(s.value().clone()),
        toml_edit::Value::Integer(i) => TomlValue::Integer(*i.value()),
        toml_edit::Value::Float(f) => TomlValue::Float(*f.value()),
        toml_edit::Value::Boolean(b) => TomlValue::Boolean(*b.value()),
        toml_edit::Value::Datetime(d) => TomlValue::Datetime(d.value().to_string()),
        toml_edit::Value::Array(array) => TomlValue::Array(array.iter().map(from_value).collect()),
        toml_edit::Value::InlineTable(table) => TomlValue::Table(
            table
                .iter()
                .map(|(key, value)| (key.to_owned(), from_value(value)))
                .collect(),
        ),
    }
}

/// A JSON value (from the EC2NodeClass's kubelet map) as TOML; `None` for `null`, which TOML
/// cannot say.
pub fn from_json(value: &Value) -> Option<TomlValue> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(TomlValue::Boolean(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => TomlValue::Integer(i),
            None => TomlValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(TomlValue::String(s.clone())),
        Value::Array(items) => Some(TomlValue::Array(items.iter().filter_map(from_json).collect())),
        Value::Object(map) => Some(TomlValue::Table(
            map.iter()
                .filter_map(|(key, value)| Some((key.clone(), from_json(value)?)))
                .collect(),
        )),
    }
}

/// The table at `path` under `root`, created (and replacing any non-table value) as needed.
pub fn table_at<'a>(root: &'a mut TomlTree, path: &[&str]) -> &'a mut TomlTree {
    let mut table = root;
    for key in path {
        let entry = table
            .entry((*key).to_owned())
            .or_insert_with(|| TomlValue::Table(TomlTree::new()));
        if !matches!(entry, TomlValue::Table(_)) {
            *entry = TomlValue::Table(TomlTree::new());
        }
        let TomlValue::Table(inner) = entry else {
            unreachable!("the entry was made a table just above");
        };
        table = inner;
    }
    table
}

/// `root` as a TOML document.
pub fn render(root: &TomlTree) -> String {
    let mut out = String::new();
    render_table(&mut Vec::new(), root, &mut out);
    out
}

fn render_table(path: &mut Vec<String>, table: &TomlTree, out: &mut String) {
    let scalars: Vec<(&String, &TomlValue)> = table
        .iter()
        .filter(|(_, value)| !matches!(value, TomlValue::Table(_)))
        .collect();
    let has_subtables = scalars.len() < table.len();
    // A header is needed for values, and for an empty table to exist at all.
    if !path.is_empty() && (!scalars.is_empty() || !has_subtables) {
        if !out.is_empty() {
            out.push('\n');
        }
        let header: Vec<String> = path.iter().map(|key| render_key(key)).collect();
        let _ = writeln!(out, "[{}]", header.join("."));
    }
    for (key, value) in scalars {
        let _ = writeln!(out, "{} = {}", render_key(key), render_inline(value));
    }
    for (key, value) in table {
        if let TomlValue::Table(inner) = value {
            path.push(key.clone());
            render_table(path, inner, out);
            path.pop();
        }
    }
}

fn render_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare { key.to_owned() } else { render_string(key) }
}

fn render_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_float(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // Debug always writes a fraction or exponent, so the value stays a float when read back.
        format!("{value:?}")
    }
}

fn render_inline(value: &TomlValue) -> String {
    match value {
        TomlValue::String(s) => render_string(s),
        TomlValue::Integer(i) => i.to_string(),
        TomlValue::Float(f) => render_float(*f),
        TomlValue::Boolean(b) => b.to_string(),
        TomlValue::Datetime(d) => d.clone(),
        TomlValue::Array(items) => {
            let items: Vec<String> = items.iter().map(render_inline).collect();
            format!("[{}]", items.join(", "))
        }
        TomlValue::Table(table) => {
            let entries: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{} = {}", render_key(key), render_inline(value)))
                .collect();
            if entries.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", entries.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_survives_parse_render_parse() {
        let text = r#"
            title = "quote \" backslash \\ tab	"
            ratio = 1.0
            big = 9007199254740993
            when = 1979-05-27T07:32:00Z
            [settings.kubernetes]
            "node-labels"."team.example.com/owner" = "a b"
            [settings.empty]
            [[settings.bootstrap.list]]
            mode = "always"
            [[settings.bootstrap.list]]
            essential = true
            flags = [1, 2.5, "x", [true]]
            inline = { a = 1, b = { c = "d" } }
        "#;
        let tree = parse(text).unwrap();
        let rendered = render(&tree);
        assert_eq!(parse(&rendered).unwrap(), tree, "{rendered}");
        assert_eq!(tree["ratio"], TomlValue::Float(1.0));
        assert_eq!(tree["big"], TomlValue::Integer(9_007_199_254_740_993));
        assert!(rendered.contains("[settings.empty]"), "{rendered}");
    }

    #[test]
    fn table_at_creates_tables_and_replaces_values_in_the_way() {
        let mut tree = parse("settings = 3").unwrap();
        table_at(&mut tree, &["settings", "kubernetes"])
            .insert("max-pods".to_owned(), TomlValue::Integer(29));
        let reparsed = parse(&render(&tree)).unwrap();
        let TomlValue::Table(settings) = &reparsed["settings"] else {
            panic!("settings is not a table: {reparsed:?}");
        };
        let TomlValue::Table(kubernetes) = &settings["kubernetes"] else {
            panic!("settings.kubernetes is not a table: {settings:?}");
        };
        assert_eq!(kubernetes["max-pods"], TomlValue::Integer(29));
    }

    #[test]
    fn bad_toml_is_an_error_and_json_nulls_are_dropped() {
        assert!(parse("[settings").is_err());
        assert_eq!(
            from_json(&serde_json::json!({"a": null, "b": [1, null]})),
            Some(TomlValue::Table(TomlTree::from([(
                "b".to_owned(),
                TomlValue::Array(vec![TomlValue::Integer(1)])
            )])))
        );
    }
}

//! Writing SQL text safely: identifiers and literals are quoted here and nowhere else. Setup builds
//! statements as text (not with bind parameters) because `--dry-run` must print exactly what would
//! run, and DDL takes no parameters anyway.

/// Words that cannot be bare identifiers (PostgreSQL's reserved key words that can appear as
/// column names in Superset's schema or ours).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_user",
    "default",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "false",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "primary",
    "references",
    "select",
    "table",
    "then",
    "to",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "when",
    "where",
    "with",
];

/// `name` as an identifier, double-quoted unless it is a plain lower-case word.
pub(crate) fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `public.<table>`.
pub(crate) fn public(table: &str) -> String {
    format!("public.{}", ident(table))
}

/// `text` as a string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A `text[]` literal: `'{a,b}'::text[]`, every element double-quoted when needed.
pub(crate) fn text_array(items: &[&str]) -> String {
    let elements: Vec<String> = items
        .iter()
        .map(|item| {
            if !item.is_empty() && item.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                (*item).to_owned()
            } else {
                format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect();
    format!(
        "{}::text[]",
        literal(&format!("{{{}}}", elements.join(",")))
    )
}

/// `statement` ending with exactly one `;`, for a script.
pub(crate) fn terminated(statement: &str) -> String {
    let trimmed = statement.trim_end();
    if trimmed.ends_with(';') {
        trimmed.to_owned()
    } else {
        format!("{trimmed};")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(ident("dashboards"), "dashboards");
        assert_eq!(ident("offset"), "\"offset\"");
        assert_eq!(ident("Odd\"name"), "\"Odd\"\"name\"");
        assert_eq!(public("table"), "public.\"table\"");
    }

    #[test]
    fn literals_and_arrays_escape_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(text_array(&["id", "uuid"]), "'{id,uuid}'::text[]");
        assert_eq!(
            text_array(&["$exists", "a'b"]),
            "'{\"$exists\",\"a''b\"}'::text[]"
        );
        assert_eq!(text_array(&[]), "'{}'::text[]");
    }
}

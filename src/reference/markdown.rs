//! Text from the code made safe for markdown: `<` outside code spans is escaped (mdBook would
//! take `<last id>` for an HTML tag and show nothing), and so is `|` inside table cells.

/// `text` as markdown prose.
pub fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for (at, c) in text.char_indices() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '<' if !in_code && tag_follows(&text[at + 1..]) => out.push_str("&lt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether what follows a `<` could start an HTML tag (`<=` and `< 5` cannot).
fn tag_follows(rest: &str) -> bool {
    rest.starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'))
}

/// `text` as the content of one table cell.
pub fn cell(text: &str) -> String {
    prose(text).replace('|', "\\|")
}

/// A table: a header row, its rule, and one row per entry (no blank line after it).
pub fn table(out: &mut String, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angle_brackets_are_escaped_outside_code_only() {
        assert_eq!(
            prose("commit_events('crm', <last id>) and `<table>_current`"),
            "commit_events('crm', &lt;last id>) and `<table>_current`"
        );
        assert_eq!(cell("a | b"), "a \\| b");
    }
}

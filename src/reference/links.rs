//! Every relative link in the README, `BENCHMARKS.md` and `docs/*.md` names a file that
//! exists, and a heading of it where the link names one (`tables.md#joins`), so moving or
//! renaming a page or a section cannot leave a reader at a dead end.

use std::path::{Path, PathBuf};

/// The markdown files whose links are checked, relative to the repository.
fn pages(repository: &Path) -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md"), PathBuf::from("BENCHMARKS.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repository.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| PathBuf::from("docs").join(path.file_name().expect("a file name")))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The targets of `[text](target)` links outside fenced code blocks, as (file, anchor); an
/// in-page anchor has an empty file. Web links are left out.
fn relative_links(markdown: &str) -> Vec<(String, Option<String>)> {
    let mut links = Vec::new();
    for line in prose_lines(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].trim();
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                let (file, anchor) = match target.split_once('#') {
                    Some((file, anchor)) => (file, Some(anchor.to_owned())),
                    None => (target, None),
                };
                links.push((file.to_owned(), anchor));
            }
            rest = &rest[end..];
        }
    }
    links
}

/// The lines outside fenced code blocks.
fn prose_lines(markdown: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    markdown.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors of a page's headings as GitHub and mdBook make them: lower case, spaces to
/// `-`, punctuation other than `-` and `_` dropped; a repeated heading gets `-1`, `-2`, ….
fn anchors(markdown: &str) -> Vec<String> {
    let mut plain: Vec<String> = Vec::new();
    let mut anchors = Vec::new();
    for line in prose_lines(markdown) {
        let Some(heading) = line.strip_prefix('#') else { continue };
        let text = heading.trim_start_matches('#').trim().to_lowercase();
        let slug: String = text
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = plain.iter().filter(|s| **s == slug).count();
        anchors.push(if repeats == 0 { slug.clone() } else { format!("{slug}-{repeats}") });
        plain.push(slug);
    }
    anchors
}

#[test]
fn every_relative_link_in_the_docs_names_a_file_and_heading_that_exist() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dead = Vec::new();
    for page in pages(&repository) {
        let text = std::fs::read_to_string(repository.join(&page)).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let dir = page.parent().unwrap_or(Path::new(""));
        for (file, anchor) in relative_links(&text) {
            let target = if file.is_empty() { page.clone() } else { normalize(&dir.join(&file)) };
            let shown = format!("{} → {file}{}", page.display(), anchor.as_deref().map(|a| format!("#{a}")).unwrap_or_default());
            let Ok(linked) = std::fs::read_to_string(repository.join(&target)) else {
                if !repository.join(&target).exists() {
                    dead.push(format!("{shown}: no such file"));
                }
                continue;
            };
            if let Some(anchor) = anchor.filter(|_| target.extension().is_some_and(|e| e == "md")) {
                if !anchors(&linked).contains(&anchor) {
                    dead.push(format!("{shown}: no such heading"));
                }
            }
        }
    }
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "See [a](docs/a.md#x), [web](https://x.test) and [here](#top).\n```\n[no](b.md)\n```\n[c](../c.md)";
    let found: Vec<(String, Option<String>)> = relative_links(text);
    let expected = [("docs/a.md", Some("x")), ("", Some("top")), ("../c.md", None)];
    assert_eq!(found, expected.map(|(f, a)| (f.to_owned(), a.map(str::to_owned))));
}

#[test]
fn anchors_are_made_as_forges_make_them() {
    let page = "# Webhooks in and out\n## In: PartnerStack's webhooks\n### The `_history` views\n## `[[delivery]]`\n## Retries\n## Retries\n```\n# not a heading\n```";
    assert_eq!(
        anchors(page),
        ["webhooks-in-and-out", "in-partnerstacks-webhooks", "the-_history-views", "delivery", "retries", "retries-1"]
    );
}

/// `a/../b` → `b`, `./a` → `a`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

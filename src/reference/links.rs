//! Every relative link in the README, `BENCHMARKS.md` and `docs/*.md` names a file that
//! exists, so moving or renaming a page cannot leave a reader at a dead end.

use std::path::{Path, PathBuf};

/// Pages other branches bring (listed in `docs/SUMMARY.md` ahead of them): a link to one is
/// checked once the file exists, and tolerated until then.
const ARRIVING: [&str; 3] = ["docs/steady-state.md", "docs/postgres-versions.md", "docs/push.md"];

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

/// The targets of `[text](target)` links outside fenced code blocks, without `#anchor`;
/// web links and in-page anchors are left out.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split('#').next().unwrap_or_default().trim();
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                links.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    links
}

#[test]
fn every_relative_link_in_the_docs_names_a_file_that_exists() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dead = Vec::new();
    for page in pages(&repository) {
        let text = std::fs::read_to_string(repository.join(&page)).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let dir = page.parent().unwrap_or(Path::new(""));
        for link in relative_links(&text) {
            let target = dir.join(&link);
            let normal = normalize(&target);
            if !repository.join(&normal).exists() && !ARRIVING.contains(&normal.to_string_lossy().as_ref()) {
                dead.push(format!("{} → {link}", page.display()));
            }
        }
    }
    assert!(dead.is_empty(), "links to files that do not exist:\n{}", dead.join("\n"));
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "See [a](docs/a.md#x), [web](https://x.test) and [here](#top).\n```\n[no](b.md)\n```\n[c](../c.md)";
    assert_eq!(relative_links(text), ["docs/a.md", "../c.md"]);
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

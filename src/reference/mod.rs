//! The reference pages generated from the code: `docs/configuration.md` from the table of
//! configuration keys ([`crate::config::keys`]) and `docs/schema.md` from the catalogue
//! ([`crate::object`]) and the reporting layer's descriptions ([`crate::store::reporting`]).
//!
//! Generated rather than written so they cannot drift: the descriptions are the ones the
//! parser's tests and the schema's `COMMENT ON`s already hold, and a test fails when the
//! committed pages differ from what the code generates, naming the command that rewrites them
//! (`partnerstack-mirror docs write`). The pages are plain markdown, read as they are on a
//! forge or built into a book with mdBook (`book.toml`); nothing here needs mdBook.

mod config;
#[cfg(test)]
mod links;
mod markdown;
mod schema;

use std::path::Path;

pub use config::configuration;
pub use schema::schema;

/// A generated page: its file name under `docs/` and what writes it.
pub struct Page {
    pub file: &'static str,
    pub render: fn() -> String,
}

/// Every generated page.
pub const PAGES: [Page; 2] = [Page { file: "configuration.md", render: configuration }, Page { file: "schema.md", render: schema }];

/// The command that rewrites the committed pages, as error messages name it.
pub const REGENERATE: &str = "cargo run -- docs write";

/// Writes every generated page into `dir`, returning the paths written.
///
/// # Errors
/// A page that cannot be written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    PAGES
        .iter()
        .map(|page| {
            let path = dir.join(page.file);
            std::fs::write(&path, (page.render)())?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn repository() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_committed_reference_pages_are_what_the_code_generates() {
        for page in &PAGES {
            let path = repository().join("docs").join(page.file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == (page.render)(),
                "docs/{} differs from what the code generates: run `{REGENERATE}` and commit the result",
                page.file
            );
        }
    }

    #[test]
    fn the_pages_are_the_same_text_on_every_call() {
        for page in &PAGES {
            assert_eq!((page.render)(), (page.render)(), "{}", page.file);
        }
    }
}

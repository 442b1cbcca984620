//! Deal attachments (research notes §2.4): `GET /deals/{key}/files` lists them,
//! `GET /deals/{key}/file/{file_key}` answers a download URL, and that URL
//! (`/files/{deal}/{file}`, outside the API and without auth, like a signed storage link)
//! serves the bytes.
//!
//! Nothing is stored: a deal's files (0–2, most deals having one) and their contents
//! follow from the deal key by hashing, so every deal, generated or created through the
//! API, has the same attachments on every run.

use serde_json::json;

use crate::Resource;

use super::{reply::Reply, schema::WriteError, state::State, update};

/// One attachment of a deal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DealFile {
    pub key: String,
    /// The deal form's file field it was uploaded through.
    pub field_key: &'static str,
    pub name: String,
    pub content_type: &'static str,
}

/// `(field_key, name, extension)` of the kinds of attachment deals get.
const KINDS: &[(&str, &str, &str)] = &[
    ("signed_contract", "Signed contract", "pdf"),
    ("proposal", "Proposal", "pdf"),
    ("requirements", "Requirements", "txt"),
    ("pricing_sheet", "Pricing", "csv"),
    ("purchase_order", "Purchase order", "pdf"),
];
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The next value of a splitmix64 sequence (spreads one hash into many draws).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The deal's attachments: none for 30% of deals, one for 45%, two for 25%.
pub(super) fn deal_files(deal_key: &str) -> Vec<DealFile> {
    let mut draw = hash(deal_key);
    let count = match next(&mut draw) % 20 {
        0..=5 => 0,
        6..=14 => 1,
        _ => 2,
    };
    let first_kind = next(&mut draw) as usize % KINDS.len();
    (0..count)
        .map(|i| {
            let (field_key, title, ext) = KINDS[(first_kind + i) % KINDS.len()];
            let key: String = (0..14).map(|_| ALNUM[next(&mut draw) as usize % ALNUM.len()] as char).collect();
            let content_type = match ext {
                "pdf" => "application/pdf",
                "csv" => "text/csv",
                _ => "text/plain; charset=utf-8",
            };
            DealFile { key: format!("dfil_{key}"), field_key, name: format!("{title}.{ext}"), content_type }
        })
        .collect()
}

/// The file's bytes: a small PDF-looking document, a text note or a CSV, 2–6 KB.
pub(super) fn content(deal_key: &str, file: &DealFile) -> Vec<u8> {
    let mut draw = hash(&format!("{deal_key}/{}", file.key));
    let target = 2_048 + (next(&mut draw) % 4_096) as usize;
    let mut out = String::new();
    match file.content_type {
        "application/pdf" => {
            out.push_str("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
            out.push_str("2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n");
            out.push_str("3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n");
            let mut line = 0;
            while out.len() < target {
                line += 1;
                out.push_str(&format!("% {} for deal {deal_key}, line {line}: {:016x}\n", file.name, next(&mut draw)));
            }
            out.push_str("trailer << /Root 1 0 R >>\n%%EOF\n");
        }
        "text/csv" => {
            out.push_str("sku,quantity,unit_price_cents\n");
            while out.len() < target {
                let n = next(&mut draw);
                out.push_str(&format!("SKU-{:05},{},{}\n", n % 100_000, 1 + n % 50, 100 * (1 + n % 997)));
            }
        }
        _ => {
            out.push_str(&format!("{} for deal {deal_key}\n\n", file.name));
            let mut item = 0;
            while out.len() < target {
                item += 1;
                out.push_str(&format!("{item}. Requirement {:08x}: the integration must keep working.\n", next(&mut draw) as u32));
            }
        }
    }
    out.into_bytes()
}

/// `GET /deals/{id}/files`: `{"deal_files": [{field_key, key, name}]}`.
pub(super) fn listing(state: &State, id: &str) -> Result<Reply, WriteError> {
    let key = update::target(state, Resource::Deal, id)?;
    let files: Vec<_> = deal_files(&key).into_iter().map(|f| json!({"field_key": f.field_key, "key": f.key, "name": f.name})).collect();
    Ok(Reply::json(200, &json!({"data": {"deal_files": files}, "message": "Files retrieved successfully", "status": 200})))
}

/// `GET /deals/{id}/file/{file_key}`: `{"url": "<origin>/files/<deal key>/<file key>"}`.
pub(super) fn link(state: &State, id: &str, file_key: &str, origin: &str) -> Result<Reply, WriteError> {
    let key = update::target(state, Resource::Deal, id)?;
    let file = find(&key, file_key)?;
    let url = format!("{origin}/files/{key}/{}", file.key);
    Ok(Reply::json(200, &json!({"data": {"url": url}, "message": "File retrieved successfully", "status": 200})))
}

/// `GET /files/{deal_key}/{file_key}`: the bytes with their content type.
pub(super) fn download(state: &State, deal_key: &str, file_key: &str) -> Result<Reply, WriteError> {
    if state.table(Resource::Deal).get(deal_key).is_none() {
        return Err(WriteError::NotFound(format!("No deal found with key '{deal_key}'")));
    }
    let file = find(deal_key, file_key)?;
    let headers =
        vec![("content-type", file.content_type.to_owned()), ("content-disposition", format!("attachment; filename=\"{}\"", file.name))];
    Ok(Reply { status: 200, body: content(deal_key, &file), headers, list_page: false })
}

fn find(deal_key: &str, file_key: &str) -> Result<DealFile, WriteError> {
    deal_files(deal_key)
        .into_iter()
        .find(|f| f.key == file_key)
        .ok_or_else(|| WriteError::NotFound(format!("No file found with key '{file_key}' on deal '{deal_key}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deal_always_has_the_same_files_and_most_deals_have_one() {
        let keys: Vec<String> = (0..400).map(|i| format!("deal_{i:014}")).collect();
        let with_files = keys.iter().filter(|k| !deal_files(k).is_empty()).count();
        assert!((220..=330).contains(&with_files), "{with_files} of 400 deals have files");
        for k in &keys {
            let files = deal_files(k);
            assert!(files.len() <= 2);
            assert_eq!(files, deal_files(k));
            for f in &files {
                let bytes = content(k, f);
                assert!((2_048..8_192).contains(&bytes.len()), "{}", bytes.len());
                assert_eq!(bytes, content(k, f));
            }
        }
    }
}

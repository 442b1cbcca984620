//! What a request path names: the API's paths under `/api/v2/` (records, webhook
//! subscriptions) and the storage links of deal attachments (`/files/…`). Pure parsing;
//! `api` and `writes` answer the routes.

use crate::Resource;

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `GET /api/v2/{deals,…}`
    List(Resource),
    /// `GET /api/v2/partner-team/{team_key}`: that team's members.
    TeamMembers(String),
    /// `GET`, `PATCH` or `DELETE /api/v2/{deals,…}/{key}`
    One(Resource, String),
    /// `GET /api/v2/deals/{key}/files`
    DealFiles(String),
    /// `GET /api/v2/deals/{key}/file/{file_key}`
    DealFile(String, String),
    /// `PATCH /api/v2/partnerships/{key}/tags`
    Tags(String),
    /// `POST /api/v2/{deals,leads}/{key}/convert`
    Convert(Resource, String),
    /// `GET` or `POST /api/v2/webhooks`: the subscriptions.
    Webhooks,
    /// `GET`, `PATCH` or `DELETE /api/v2/webhooks/{key}`
    Webhook(String),
    Unknown,
}

/// The listed object types by their path segment.
fn collection(segment: &str) -> Option<Resource> {
    Resource::ALL.into_iter().find(|k| *k != Resource::PartnerTeamMember && k.path() == segment)
}

/// Parses a request path (the base path included).
pub(super) fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/api/v2/") else { return Route::Unknown };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let id = |segment: &str| percent_decode(segment);
    match segments.as_slice() {
        ["deals", key, "files"] if !key.is_empty() => Route::DealFiles(id(key)),
        ["deals", key, "file", file] if !key.is_empty() && !file.is_empty() => Route::DealFile(id(key), id(file)),
        ["partnerships", key, "tags"] if !key.is_empty() => Route::Tags(id(key)),
        [name @ ("deals" | "leads"), key, "convert"] if !key.is_empty() => {
            collection(name).map_or(Route::Unknown, |k| Route::Convert(k, id(key)))
        }
        ["webhooks"] => Route::Webhooks,
        ["webhooks", key] if !key.is_empty() => Route::Webhook(id(key)),
        // The docs are unsure between `partner-team` and `partner_team`; accept both.
        ["partner-team" | "partner_team", team] if !team.is_empty() => Route::TeamMembers(percent_decode(team)),
        [name] => collection(name).map_or(Route::Unknown, Route::List),
        [name, key] if !key.is_empty() => collection(name).map_or(Route::Unknown, |k| Route::One(k, percent_decode(key))),
        _ => Route::Unknown,
    }
}

/// The storage link of a deal attachment, `/files/{deal_key}/{file_key}` (outside the API).
pub(super) fn storage_route(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/files/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [deal, file] if !deal.is_empty() && !file.is_empty() => Some((percent_decode(deal), percent_decode(file))),
        _ => None,
    }
}

/// `%XX` escapes decoded (invalid ones kept as they are), for identifiers in paths.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_lists_single_records_and_partner_teams() {
        assert_eq!(route("/api/v2/deals"), Route::List(Resource::Deal));
        assert_eq!(route("/api/v2/deals/"), Route::List(Resource::Deal));
        assert_eq!(route("/api/v2/customers/cust_1"), Route::One(Resource::Customer, "cust_1".into()));
        assert_eq!(route("/api/v2/partner-team/stck_1"), Route::TeamMembers("stck_1".into()));
        assert_eq!(route("/api/v2/partner_team/stck_1"), Route::TeamMembers("stck_1".into()));
        assert_eq!(route("/api/v2/partnerships/ava%2Bx%40a.io"), Route::One(Resource::Partnership, "ava+x@a.io".into()));
        assert_eq!(percent_decode("100%"), "100%");
        for unknown in ["/api/v2/partner-team", "/api/v2/partner_team_members", "/api/v1/deals", "/api/v2/widgets", "/api/v2/deals/a/b"] {
            assert_eq!(route(unknown), Route::Unknown, "{unknown}");
        }
    }

    #[test]
    fn paths_name_deal_files_tags_conversions_webhooks_and_storage_links() {
        assert_eq!(route("/api/v2/deals/deal_1/files"), Route::DealFiles("deal_1".into()));
        assert_eq!(route("/api/v2/deals/deal_1/file/dfil_2"), Route::DealFile("deal_1".into(), "dfil_2".into()));
        assert_eq!(route("/api/v2/partnerships/part_1/tags"), Route::Tags("part_1".into()));
        assert_eq!(route("/api/v2/leads/a%40b.io/convert"), Route::Convert(Resource::Lead, "a@b.io".into()));
        assert_eq!(route("/api/v2/customers/c/convert"), Route::Unknown);
        assert_eq!(route("/api/v2/webhooks/"), Route::Webhooks);
        assert_eq!(route("/api/v2/webhooks/whk_1"), Route::Webhook("whk_1".into()));
        assert_eq!(storage_route("/files/deal_1/dfil_2"), Some(("deal_1".into(), "dfil_2".into())));
        assert_eq!(storage_route("/files/deal_1"), None);
    }
}

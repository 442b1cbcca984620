//! HTTP details stay in `partnerstack/`: no HTTP method or endpoint path is written anywhere
//! else in `src/`, so the rest of the mirror speaks to the API in the client's domain verbs.

use std::path::Path;

use crate::object::ObjectKind;

/// What in `line` (Rust code outside `partnerstack/`) is an HTTP detail, if anything.
fn http_detail(line: &str) -> Option<String> {
    let code = line.trim_start();
    // Comments, and commands shown to a person (`simulate` prints a curl example).
    if code.starts_with("//") || code.contains("curl ") {
        return None;
    }
    if code.contains("Method::") || code.contains("reqwest::Method") {
        return Some("an HTTP method".into());
    }
    if code.contains(".api_path()") {
        return Some("an object's API path".into());
    }
    // A path literal: a string that starts with an endpoint's path and goes on under it, or
    // appends an object's path to a URL (`"{base}/groups"`). The bare names are also tables
    // and settings, and the mirror serves webhooks of its own under `/webhooks`.
    let objects = ObjectKind::ALL.iter().map(|kind| kind.api_path());
    let under = objects.clone().chain(["webhooks"]).flat_map(|path| [format!("\"{path}/"), format!("\"{path}?")]);
    let appended = objects.map(|path| format!("}}/{path}"));
    under.chain(appended).find(|literal| code.contains(literal.as_str())).map(|literal| format!("the path literal {literal}"))
}

/// Every `.rs` file under `dir`, `partnerstack/` left out.
fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("partnerstack") {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_http_method_or_endpoint_path_is_written_outside_the_api_client() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 50, "the sources were found: {files:?}");
    let mut found = Vec::new();
    for file in files {
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            if let Some(detail) = http_detail(line) {
                found.push(format!("{}:{}: {detail}", file.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "HTTP details outside src/partnerstack/ (give the client a method instead):\n{}", found.join("\n"));
}

#[test]
fn the_check_tells_http_details_from_domain_verbs() {
    let details = [
        r#"let link = api.request_json(Method::GET, &path, None, true).await?;"#,
        r#"let listing = api.get(&format!("deals/{}/files", key)).await?;"#,
        r#"path: format!("{}/{}", kind.api_path(), team),"#,
        r#"let url = format!("{}/groups?limit=1", base);"#,
        r#"http.post(format!("{base}/leads")).send().await"#,
        r#"let path = format!("webhooks/{}", key);"#,
        r#"const PATH: &str = "partner-team/";"#,
    ];
    for line in details {
        assert!(http_detail(line).is_some(), "{line}");
    }
    let verbs = [
        "let files = api.deal_files(key).await?;",
        "// the API's `deals/{key}/files` lists them",
        r#".route("/webhooks/partnerstack/{token}", post(webhook))"#,
        r#"let hooks_url = format!("http://{}/webhooks", address);"#,
        r#"detail: "GET /groups answered 200".into(),"#,
        r#"let object = "deals";"#,
    ];
    for line in verbs {
        assert_eq!(http_detail(line), None, "{line}");
    }
}

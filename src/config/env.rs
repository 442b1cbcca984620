//! The environment as a configuration source: `PSM_SECTION__KEY` for any key, and the
//! conventional `DATABASE_URL`, `PARTNERSTACK_PUBLIC_KEY` and `PARTNERSTACK_PRIVATE_KEY`.
//!
//! figment's own `Env` provider parses every value (`12345` becomes a number, `0123` becomes
//! 123) and names a bad value's key in upper case without the variable. Here each variable is
//! a provider of its own: a key's value is its exact text (typed keys read it leniently, see
//! [`lenient`](super::lenient)), and an error about it can name the variable it came from.
//! Only a whole section or the `delivery` array (`PSM_DELIVERY='[{name="crm", …}]'`) is
//! parsed as an inline value, since there is no other way to write a table in one variable.

use figment::{
    value::{Dict, Map, Value},
    Figment, Metadata, Profile, Provider, Source,
};

/// The prefix of the variables that set keys; `__` separates the key's parts.
const PREFIX: &str = "PSM_";
const SEPARATOR: &str = "__";
/// The conventional names, and the keys they set (over any `PSM_` variable for the same key).
pub(super) const CONVENTIONAL: [(&str, &str); 3] = [
    ("DATABASE_URL", "database.url"),
    ("PARTNERSTACK_PUBLIC_KEY", "partnerstack.public_key"),
    ("PARTNERSTACK_PRIVATE_KEY", "partnerstack.private_key"),
];

/// The name an error shows for a value that came from the environment variable `name`.
pub(super) fn describe(name: &str) -> String {
    format!("the environment variable {name}")
}

/// One environment variable that sets one key.
struct Variable {
    name: String,
    path: Vec<String>,
    value: String,
}

impl Provider for Variable {
    fn metadata(&self) -> Metadata {
        Metadata::from(describe(&self.name), Source::Custom(self.name.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let value = match self.path.len() {
            1 => self.value.parse().expect("parsing a figment value is infallible"),
            _ => Value::from(self.value.clone()),
        };
        let nested = self.path.iter().rev().fold(value, |inner, key| Value::from(Dict::from([(key.clone(), inner)])));
        let dict = nested.into_dict().expect("a variable's key has at least one part");
        Ok(Profile::Default.collect(dict))
    }
}

/// This process's environment, as text (a value that is not UTF-8 is read lossily).
pub(super) fn process_environment() -> Vec<(String, String)> {
    std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
}

/// `figment` with the variables of `vars` that set keys merged over it: `PSM_` ones in name
/// order (so `PSM_SYNC__LOOKBACK` wins over a `lookback` inside `PSM_SYNC`), then the
/// conventional names. Variable names match without regard to case, as figment's did.
pub(super) fn layer(figment: Figment, vars: impl IntoIterator<Item = (String, String)>) -> Figment {
    let (mut prefixed, mut conventional): (Vec<Variable>, Vec<Variable>) =
        vars.into_iter().filter_map(|(name, value)| variable(name, value)).partition(|v| !is_conventional(&v.name));
    prefixed.sort_by(|a, b| a.name.cmp(&b.name));
    conventional.sort_by_key(|v| CONVENTIONAL.iter().position(|(name, _)| name.eq_ignore_ascii_case(&v.name)));
    prefixed.into_iter().chain(conventional).fold(figment, Figment::merge)
}

fn is_conventional(name: &str) -> bool {
    CONVENTIONAL.iter().any(|(conventional, _)| conventional.eq_ignore_ascii_case(name))
}

/// The key `name` sets, if it sets one: `PSM_SYNC__LOOKBACK` → `sync.lookback`.
fn variable(name: String, value: String) -> Option<Variable> {
    if let Some((_, key)) = CONVENTIONAL.iter().find(|(conventional, _)| conventional.eq_ignore_ascii_case(&name)) {
        let path = key.split('.').map(str::to_owned).collect();
        return Some(Variable { name, path, value });
    }
    let rest = name.get(..PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(PREFIX)).map(|_| &name[PREFIX.len()..])?;
    let path: Vec<String> = rest.split(SEPARATOR).map(str::to_ascii_lowercase).collect();
    if path.iter().any(|part| part.is_empty()) {
        return None;
    }
    Some(Variable { name, path, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(vars: &[(&str, &str)], key: &str) -> Option<Value> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        layer(Figment::new(), vars).find_value(key).ok()
    }

    #[test]
    fn a_nested_key_keeps_its_exact_text_and_a_section_is_parsed_inline() {
        assert_eq!(value_of(&[("PSM_PARTNERSTACK__PRIVATE_KEY", "0123")], "partnerstack.private_key").unwrap().as_str(), Some("0123"));
        assert_eq!(value_of(&[("PSM_SYNC", "{lookback = \"5m\"}")], "sync.lookback").unwrap().as_str(), Some("5m"));
        assert_eq!(value_of(&[("psm_sync__lookback", "5m")], "sync.lookback").unwrap().as_str(), Some("5m"));
        assert!(value_of(&[("PSM_", "x"), ("PSM_SYNC____X", "y"), ("OTHER", "z")], "").unwrap().as_dict().unwrap().is_empty());
    }

    #[test]
    fn the_conventional_names_win_over_psm_variables_and_specific_keys_over_sections() {
        let vars = [("DATABASE_URL", "postgres://a/x"), ("PSM_DATABASE__URL", "postgres://b/x")];
        assert_eq!(value_of(&vars, "database.url").unwrap().as_str(), Some("postgres://a/x"));
        let vars = [("PSM_SYNC__LOOKBACK", "1m"), ("PSM_SYNC", "{lookback = \"5m\"}")];
        assert_eq!(value_of(&vars, "sync.lookback").unwrap().as_str(), Some("1m"));
    }
}

//! What a push's query means for its object: which column is the key and how it finds the
//! record, which columns updates compare and send, which go into creates, and the tags it
//! manages. Built from the query's columns as the database describes them, checked against
//! the write-back catalogue (`crate::write_back`), the one source of what can be written.
//!
//! A column that could not be compared with the mirror is refused here, before any run: a
//! push that cannot see whether PartnerStack already holds a value would queue it again on
//! every run.

use crate::{
    config::PushConfig,
    object::ObjectKind,
    write_back::{case_insensitive, current_value, natural_keys, Current, Operation, PayloadRule},
};

/// One column of the query as the database describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryColumn {
    pub name: String,
    /// `format_type` of its type (`text`, `numeric`, `text[]`, …), for messages.
    pub type_name: String,
    /// `pg_type.typcategory`: `S` string, `N` numeric, `B` boolean, `D` date/time, `E` enum,
    /// `A` array, `U` user-defined (json, jsonb), …
    pub category: char,
    /// For an array, its element's category.
    pub element_category: Option<char>,
}

/// How the key column finds the record in the mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// PartnerStack's key (`<table>.key`): rows whose record the mirror lacks are not found.
    Key,
    /// A natural key, held in the object table's column of the same name: a record the mirror
    /// lacks is created.
    Natural { field: &'static str, case_insensitive: bool },
}

/// A column that sets a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field, as the API and the query's column name it.
    pub name: String,
    /// The SQL type the desired value is cast to (the mirror column's), `None`: sent as the
    /// query returns it (fields only a create sets and the mirror has no column for).
    pub sql_type: Option<&'static str>,
    /// Compared with this and sent by updates; `None`: only a create sets it.
    pub current: Option<Current>,
    /// Sent when the record is created.
    pub create: bool,
}

/// Everything a run needs to know about the query, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub push: String,
    pub kind: ObjectKind,
    /// The key column's name.
    pub key: String,
    pub matching: Matching,
    /// The columns besides the key and `tags`, in the query's order.
    pub fields: Vec<Field>,
    /// `tags` with the patterns (`LIKE` form) it manages; `None` without a `tags` column.
    pub tags: Option<Vec<String>>,
    /// Whether `tags` goes into a create's payload.
    pub create_tags: bool,
}

/// Why a query does not fit its push: a configuration error naming the push and the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("push {push}: the query has no column `{key}` (the key column: `key = \"{key}\"`)")]
    NoKeyColumn { push: String, key: String },
    #[error("push {push}: column `{column}` {reason}")]
    Column { push: String, column: String, reason: String },
    #[error("push {push}: {reason}")]
    Query { push: String, reason: String },
}

impl Shape {
    /// Checks `columns` (the query's, as described) against what a write-back can set on the
    /// push's object.
    pub fn new(push: &PushConfig, columns: &[QueryColumn]) -> Result<Shape, ShapeError> {
        let kind = push.object;
        let column_error = |column: &str, reason: String| ShapeError::Column { push: push.name.clone(), column: column.to_owned(), reason };
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|d| d.name == c.name) {
                return Err(column_error(&c.name, "appears twice in the query".into()));
            }
        }
        let matching = match push.key.as_str() {
            key if natural_keys(kind).contains(&key) => {
                let field = natural_keys(kind).iter().copied().find(|f| *f == key).expect("contained");
                Matching::Natural { field, case_insensitive: case_insensitive(field) }
            }
            _ => Matching::Key,
        };
        let key = columns
            .iter()
            .find(|c| c.name == push.key)
            .ok_or_else(|| ShapeError::NoKeyColumn { push: push.name.clone(), key: push.key.clone() })?;
        check_type(key, Some("text")).map_err(|reason| column_error(&key.name, reason))?;
        let creates = matches!(matching, Matching::Natural { .. });
        let updates = Operation::Update.applies_to(kind);
        let tags_field = Operation::ModifyTags.applies_to(kind);

        let mut fields = Vec::new();
        let mut tags = None;
        for c in columns.iter().filter(|c| c.name != push.key) {
            if c.name == "tags" && tags_field {
                if push.manage_tags.is_empty() {
                    return Err(column_error(
                        "tags",
                        "needs `manage_tags`: the patterns of the tags this push owns (e.g. [\"tier:*\"], or [\"*\"] for every \
                         tag); tags outside them are left alone"
                            .into(),
                    ));
                }
                check_type(c, Some("text[]")).map_err(|reason| column_error(&c.name, reason))?;
                tags = Some(push.manage_tags.iter().map(|p| crate::store::like_pattern(p)).collect());
                continue;
            }
            let in_update = updates && Operation::Update.writable_fields(kind).contains(&c.name.as_str());
            let in_create = creates && Operation::Create.writable_fields(kind).contains(&c.name.as_str());
            if !in_update && !in_create {
                return Err(column_error(&c.name, not_writable(push, &c.name, updates, creates, tags_field)));
            }
            let current = match in_update {
                true => Some(current_value(kind, &c.name).ok_or_else(|| {
                    column_error(
                        &c.name,
                        format!(
                            "cannot be pushed: PartnerStack does not return {} {} as it was sent, so the mirror cannot tell \
                             whether it holds the desired value (a push would send it again on every run)",
                            kind.singular(),
                            c.name
                        ),
                    )
                })?),
                false => None,
            };
            let sql_type = match current {
                Some(Current::RawText(_)) => Some("text"),
                _ => typed_column(kind, &c.name),
            };
            check_type(c, sql_type).map_err(|reason| column_error(&c.name, reason))?;
            fields.push(Field { name: c.name.clone(), sql_type, current, create: in_create });
        }
        if tags.is_none() && !push.manage_tags.is_empty() {
            return Err(ShapeError::Query {
                push: push.name.clone(),
                reason: "`manage_tags` is set but the query has no `tags` column (a text[] of the tags the record should hold)".into(),
            });
        }
        let create_tags = creates && tags.is_some() && Operation::Create.writable_fields(kind).contains(&"tags");
        let shape = Shape { push: push.name.clone(), kind, key: push.key.clone(), matching, fields, tags, create_tags };
        if creates {
            shape.check_create_rules()?;
        }
        Ok(shape)
    }

    /// The fields a create of this push sends, the key included.
    pub fn create_fields(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.key.as_str())
            .chain(self.fields.iter().filter(|f| f.create).map(|f| f.name.as_str()))
            .chain(self.create_tags.then_some("tags"))
    }

    /// A create must carry what the write queue requires of it (`PayloadRule`), whatever the
    /// row: checked on the columns, so no row's INSERT can be refused for a missing field.
    fn check_create_rules(&self) -> Result<(), ShapeError> {
        let sent: Vec<&str> = self.create_fields().collect();
        let refuse = |reason: String| Err(ShapeError::Query { push: self.push.clone(), reason });
        for rule in Operation::Create.payload_rules(self.kind) {
            match rule {
                PayloadRule::Required(fields) => {
                    let missing: Vec<&str> = fields.iter().copied().filter(|f| !sent.contains(f)).collect();
                    if !missing.is_empty() {
                        return refuse(format!(
                            "creating a {} needs the column(s) {} (the key is an external key, so rows the mirror lacks are \
                             created); add them, or set key = \"key\" to update only",
                            self.kind.singular(),
                            missing.join(", ")
                        ));
                    }
                }
                PayloadRule::ExactlyOne(fields) => {
                    if fields.iter().filter(|f| sent.contains(f)).count() != 1 {
                        return refuse(format!(
                            "creating a {} needs exactly one of the columns {}",
                            self.kind.singular(),
                            fields.join(", ")
                        ));
                    }
                }
                PayloadRule::AtLeastOne(fields, meaning) => {
                    if !fields.iter().any(|f| sent.contains(f)) {
                        return refuse(format!("creating a {} needs the column {meaning}", self.kind.singular()));
                    }
                }
                PayloadRule::Arrays(_) => {}
            }
        }
        Ok(())
    }
}

/// The SQL type of `kind`'s typed column named `field`, if it has one.
fn typed_column(kind: ObjectKind, field: &str) -> Option<&'static str> {
    kind.columns().iter().find(|c| c.name == field).map(|c| c.ty.sql())
}

/// Whether the query's column can be cast to `sql_type` without a value failing at run time:
/// the categories must agree (a text column for a bigint field would fail on the first
/// `'n/a'`; cast it in the query where that is meant).
fn check_type(column: &QueryColumn, sql_type: Option<&str>) -> Result<(), String> {
    let Some(target) = sql_type else { return Ok(()) };
    let fits = match target {
        "text" => matches!(column.category, 'S' | 'E'),
        "bigint" => column.category == 'N',
        "boolean" => column.category == 'B',
        "date" | "timestamptz" => column.category == 'D',
        "text[]" => column.category == 'A' && matches!(column.element_category, Some('S' | 'E')),
        _ => true,
    };
    match fits {
        true => Ok(()),
        false => Err(format!("is {}, and the field is {target}: cast it in the query (`{}::{target}`)", column.type_name, column.name)),
    }
}

/// Why `column` is not a field this push can set, with the fields it can.
fn not_writable(push: &PushConfig, column: &str, updates: bool, creates: bool, tags: bool) -> String {
    let kind = push.object;
    let mut can: Vec<&str> = Vec::new();
    if updates {
        can.extend(Operation::Update.writable_fields(kind).iter().filter(|f| current_value(kind, f).is_some()));
    }
    if creates {
        for field in Operation::Create.writable_fields(kind) {
            if !can.contains(field) && *field != "tags" {
                can.push(field);
            }
        }
    }
    if tags {
        can.push("tags");
    }
    let mut reason =
        format!("is not a field a write-back can set on {kind}; the query's columns, besides `{}`, may be: {}", push.key, can.join(", "));
    if !creates && !natural_keys(kind).is_empty() && Operation::Create.writable_fields(kind).contains(&column) {
        let keys: Vec<String> = natural_keys(kind).iter().map(|k| format!("key = \"{k}\"")).collect();
        reason.push_str(&format!(" (only a create sets it: name the records by an external key, {})", keys.join(" or ")));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn push(body: &str) -> PushConfig {
        Config::from_toml(&format!("[[push]]\nname = \"p\"\nquery = \"SELECT 1\"\n{body}")).unwrap().pushes.remove(0)
    }

    fn col(name: &str, ty: &str) -> QueryColumn {
        let (category, element_category) = match ty {
            "text" | "varchar" => ('S', None),
            "bigint" | "integer" | "numeric" => ('N', None),
            "boolean" => ('B', None),
            "date" | "timestamptz" => ('D', None),
            "text[]" => ('A', Some('S')),
            "integer[]" => ('A', Some('N')),
            "jsonb" => ('U', None),
            other => panic!("{other}"),
        };
        QueryColumn { name: name.into(), type_name: ty.into(), category, element_category }
    }

    #[test]
    fn the_push_page_lists_every_key_and_field_a_push_can_set_on_each_object() {
        let page = include_str!("../../docs/push.md");
        for kind in ObjectKind::ALL.into_iter().filter(|k| crate::write_back::pushable(*k)) {
            let row =
                page.lines().find(|l| l.starts_with(&format!("| `{}` |", kind.table()))).unwrap_or_else(|| panic!("no row for {kind}"));
            let updates = Operation::Update.writable_fields(kind).iter().filter(|f| current_value(kind, f).is_some());
            let only_created = Operation::Create
                .writable_fields(kind)
                .iter()
                .filter(|f| !natural_keys(kind).is_empty() && !Operation::Update.writable_fields(kind).contains(f));
            let tags = Operation::ModifyTags.applies_to(kind).then_some(&"tags");
            for field in crate::config::push_keys_for(kind).iter().chain(updates).chain(only_created).chain(tags) {
                assert!(row.contains(&format!("`{field}`")), "docs/push.md's row for {kind} lacks `{field}`");
            }
        }
    }

    #[test]
    fn an_update_push_compares_typed_columns_and_raw_fields() {
        let p = push("object = \"partnerships\"");
        let shape = Shape::new(&p, &[col("key", "text"), col("group_key", "varchar"), col("manager_email", "text")]).unwrap();
        assert_eq!(shape.matching, Matching::Key);
        assert_eq!(
            shape.fields[0],
            Field { name: "group_key".into(), sql_type: Some("text"), current: Some(Current::Column("group_key")), create: false }
        );
        assert_eq!(shape.fields[1].current, Some(Current::RawText(&["manager", "email"])));
        let p = push("object = \"deals\"");
        let shape = Shape::new(&p, &[col("key", "text"), col("amount", "numeric"), col("close_date", "date")]).unwrap();
        assert_eq!(shape.fields.iter().map(|f| f.sql_type).collect::<Vec<_>>(), [Some("bigint"), Some("date")]);
    }

    #[test]
    fn a_column_that_is_not_a_writable_field_is_refused_naming_the_push_and_the_column() {
        let p = push("object = \"partnerships\"");
        let err = Shape::new(&p, &[col("key", "text"), col("colour", "text")]).unwrap_err().to_string();
        assert!(err.contains("push p") && err.contains("`colour`") && err.contains("group_key"), "{err}");
        // An update-only push cannot set what only a create sets.
        let err = Shape::new(&p, &[col("key", "text"), col("first_name", "text")]).unwrap_err().to_string();
        assert!(err.contains("`first_name`") && err.contains("key = \"partner_key\""), "{err}");
        // The API does not return these as sent: never comparable.
        let p = push("object = \"customers\"");
        let err = Shape::new(&p, &[col("key", "text"), col("meta", "jsonb")]).unwrap_err().to_string();
        assert!(err.contains("`meta`") && err.contains("every run"), "{err}");
    }

    #[test]
    fn the_key_column_must_be_there_and_text() {
        let p = push("object = \"deals\"\nkey = \"external_key\"");
        let err = Shape::new(&p, &[col("key", "text"), col("stage", "text")]).unwrap_err();
        assert_eq!(err, ShapeError::NoKeyColumn { push: "p".into(), key: "external_key".into() });
        let err = Shape::new(&p, &[col("external_key", "integer"), col("partner_key", "text")]).unwrap_err().to_string();
        assert!(err.contains("`external_key`") && err.contains("external_key::text"), "{err}");
        let err = Shape::new(&p, &[col("external_key", "text"), col("stage", "text"), col("stage", "text")]).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn a_value_that_could_fail_its_cast_at_run_time_is_refused_at_start() {
        let p = push("object = \"deals\"");
        let err = Shape::new(&p, &[col("key", "text"), col("amount", "text")]).unwrap_err().to_string();
        assert!(err.contains("`amount` is text, and the field is bigint") && err.contains("amount::bigint"), "{err}");
        let err = Shape::new(&p, &[col("key", "text"), col("stage", "bigint")]).unwrap_err().to_string();
        assert!(err.contains("`stage`"), "{err}");
    }

    #[test]
    fn tags_need_manage_tags_and_manage_tags_needs_tags() {
        let p = push("object = \"partnerships\"");
        let err = Shape::new(&p, &[col("key", "text"), col("tags", "text[]")]).unwrap_err().to_string();
        assert!(err.contains("`tags`") && err.contains("manage_tags"), "{err}");
        let p = push("object = \"partnerships\"\nmanage_tags = [\"tier:*\", \"50%_off\"]");
        let err = Shape::new(&p, &[col("key", "text"), col("group_key", "text")]).unwrap_err().to_string();
        assert!(err.contains("manage_tags") && err.contains("no `tags` column"), "{err}");
        let err = Shape::new(&p, &[col("key", "text"), col("tags", "integer[]")]).unwrap_err().to_string();
        assert!(err.contains("`tags` is integer[]"), "{err}");
        let shape = Shape::new(&p, &[col("key", "text"), col("tags", "text[]")]).unwrap();
        assert_eq!(shape.tags, Some(vec!["tier:%".to_owned(), "50\\%\\_off".to_owned()]));
        assert!(!shape.create_tags, "an update-only push creates nothing");
    }

    #[test]
    fn a_push_by_external_key_must_carry_what_a_create_requires() {
        let p = push("object = \"customers\"\nkey = \"customer_key\"");
        let err = Shape::new(&p, &[col("customer_key", "text"), col("name", "text")]).unwrap_err().to_string();
        assert!(err.contains("email, partner_key") && err.contains("key = \"key\""), "{err}");
        let shape =
            Shape::new(&p, &[col("customer_key", "text"), col("email", "text"), col("partner_key", "text"), col("name", "text")]).unwrap();
        assert_eq!(shape.matching, Matching::Natural { field: "customer_key", case_insensitive: false });
        // partner_key only goes into creates: an update cannot change a customer's partner.
        let partner = shape.fields.iter().find(|f| f.name == "partner_key").unwrap();
        assert_eq!((partner.create, partner.current), (true, None));
        let p = push("object = \"transactions\"");
        let both = [
            col("key", "text"),
            col("amount", "integer"),
            col("currency", "text"),
            col("customer_key", "text"),
            col("customer_email", "text"),
        ];
        let err = Shape::new(&p, &both).unwrap_err().to_string();
        assert!(err.contains("exactly one of"), "{err}");
        let shape = Shape::new(&p, &both[..4]).unwrap();
        assert_eq!(shape.create_fields().collect::<Vec<_>>(), ["key", "amount", "currency", "customer_key"]);
        let p = push("object = \"partnerships\"\nkey = \"email\"\nmanage_tags = [\"tier:*\"]");
        let shape = Shape::new(&p, &[col("email", "text"), col("tags", "text[]"), col("tier_key", "text")]).unwrap();
        assert_eq!(shape.matching, Matching::Natural { field: "email", case_insensitive: true });
        assert!(shape.create_tags);
        assert_eq!(shape.create_fields().collect::<Vec<_>>(), ["email", "tags"], "tier_key is set by an update once the partner exists");
    }
}

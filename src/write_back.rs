//! The write-back catalogue: which operations apply to which object types, what a request's
//! payload must carry, which natural keys identify the record a create makes, and which fields
//! the API lets each operation set.
//!
//! The one source of these facts. The write queue's checks and trigger functions in the
//! database are generated from it at every start (`store::reporting::write_queue`, applied
//! with the reporting layer), the workers read it (`queue`), and pushes check their columns
//! against it. A new operation or object type is a line here.

use crate::object::ObjectKind;

/// A `write_queue.operation`; the INSERT trigger admits these and no other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
    ModifyTags,
    Convert,
    Refresh,
    FetchAttachments,
}

use ObjectKind as K;

/// A condition on a request's payload, checked at INSERT with the message it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadRule {
    /// Every one of these fields must be present.
    Required(&'static [&'static str]),
    /// At least one of these fields; the message says what they mean.
    AtLeastOne(&'static [&'static str], &'static str),
    /// Exactly one of these fields.
    ExactlyOne(&'static [&'static str]),
    /// These fields, when present, must be arrays.
    Arrays(&'static [&'static str]),
}

impl Operation {
    /// Every operation.
    pub const ALL: &'static [Operation] = <Operation as strum::VariantArray>::VARIANTS;

    /// The name in `write_queue.operation`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The object types a request of this operation may name (docs/write-back.md): what the API can do.
    pub fn kinds(self) -> &'static [ObjectKind] {
        match self {
            Operation::Create => &[K::Action, K::Customer, K::Deal, K::Lead, K::Partnership, K::Reward, K::Transaction],
            Operation::Update | Operation::Delete => &[K::Lead, K::Deal, K::Customer, K::Partnership],
            Operation::ModifyTags => &[K::Partnership],
            Operation::Convert => &[K::Lead, K::Deal],
            // Every object read one by one; partner-team members have no single-record read.
            Operation::Refresh => {
                &[K::Action, K::Application, K::Customer, K::Deal, K::Group, K::Lead, K::Partnership, K::Reward, K::Transaction]
            }
            Operation::FetchAttachments => &[K::Deal],
        }
    }

    /// Whether `kind` may be named by a request of this operation.
    pub fn applies_to(self, kind: ObjectKind) -> bool {
        self.kinds().contains(&kind)
    }

    /// A request addresses an existing record by its mirror key (all but creates).
    pub fn needs_object_key(self) -> bool {
        self != Operation::Create
    }

    /// Makes a new record (a create, or a conversion's customer): an attempt that ended
    /// without an answer may have taken effect, so it is looked up before being sent again.
    pub fn creates(self) -> bool {
        matches!(self, Operation::Create | Operation::Convert)
    }

    /// What the payload of a request for `kind` must satisfy (research notes §2).
    pub fn payload_rules(self, kind: ObjectKind) -> &'static [PayloadRule] {
        use PayloadRule::{Arrays, AtLeastOne, ExactlyOne, Required};
        match (self, kind) {
            (Operation::Create, K::Customer) => &[Required(&["customer_key", "email", "partner_key"])],
            (Operation::Create, K::Lead) => &[Required(&["external_key", "partner_key", "status"])],
            (Operation::Create, K::Partnership) => &[Required(&["email"])],
            (Operation::Create, K::Transaction) => {
                &[Required(&["amount", "currency"]), ExactlyOne(&["customer_key", "customer_external_key", "customer_email"])]
            }
            (Operation::Create, K::Action) => &[Required(&["target_type", "target_key", "type", "value"])],
            (Operation::Create, K::Reward) => &[Required(&["amount"])],
            (Operation::Create, K::Deal) => {
                &[AtLeastOne(&["partner_key", "group_key"], "partner_key (source partner) or group_key (source vendor)")]
            }
            (Operation::Convert, K::Deal) => &[Required(&["email"])],
            (Operation::ModifyTags, K::Partnership) => {
                &[AtLeastOne(&["add", "remove"], "\"add\" and/or \"remove\" arrays of tags"), Arrays(&["add", "remove"])]
            }
            _ => &[],
        }
    }

    /// The fields of the API's request body this operation may set on `kind` (research notes
    /// §2): what a push may name as columns. Empty where the operation takes no fields.
    pub fn writable_fields(self, kind: ObjectKind) -> &'static [&'static str] {
        match (self, kind) {
            (Operation::Create, K::Partnership) => {
                &["email", "first_name", "last_name", "partner_key", "group_key", "tags", "manager_email", "manager_name", "fields"]
            }
            (Operation::Update, K::Partnership) => &["fields", "group_key", "manager_email", "tier_key"],
            (Operation::Create, K::Customer) => &["customer_key", "email", "partner_key", "name", "provider_key", "member_key", "meta"],
            (Operation::Update, K::Customer) => &["customer_key", "email", "member_key", "meta", "name", "provider_key"],
            (Operation::Create | Operation::Update, K::Deal) => &[
                "account_name",
                "amount",
                "close_date",
                "contact_first_name",
                "contact_last_name",
                "customer_key",
                "external_key",
                "fields",
                "group_key",
                "lost_reason",
                "mold_key",
                "partner_key",
                "source",
                "stage",
            ],
            (Operation::Create | Operation::Update, K::Lead) => {
                &["external_key", "partner_key", "status", "meta", "amount", "approved", "fields", "group_key", "mold_key"]
            }
            (Operation::Create, K::Transaction) => &[
                "key",
                "amount",
                "currency",
                "customer_key",
                "customer_external_key",
                "customer_email",
                "category_key",
                "product_key",
                "metadata",
                "test",
                "created_at",
            ],
            (Operation::Create, K::Action) => &["target_type", "target_key", "type", "value", "external_key"],
            (Operation::Create, K::Reward) => &["amount", "description", "target"],
            (Operation::ModifyTags, K::Partnership) => &["add", "remove"],
            (Operation::Convert, K::Deal | K::Lead) => &["email", "customer_key"],
            _ => &[],
        }
    }
}

/// The payload fields that identify the record a create of `kind` makes, most specific first:
/// what an ambiguous create is looked up by, and what orders it with later requests for the
/// same record (`write_queue.touches`).
pub fn natural_keys(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        K::Customer => &["customer_key"],
        K::Deal | K::Lead => &["external_key"],
        K::Partnership => &["partner_key", "email"],
        K::Transaction => &["key"],
        _ => &[],
    }
}

/// Where the mirror keeps the current value of a field a write-back sets: what a push compares
/// the value its query wants with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Current {
    /// The object table's typed column of this name (its type in [`ObjectKind::columns`]).
    Column(&'static str),
    /// Text at this path in the row's `raw` (the record as the API returned it).
    RawText(&'static [&'static str]),
}

/// Fields the API takes but does not return as sent (`meta` reads back as `{}` or merged
/// into `mdata`, `fields` as form data, a customer's `member_key` not at all): the mirror
/// cannot tell whether they hold what a push wants, so a push may not set them (it would see
/// a difference, and queue the same request, on every run).
const UNREADABLE: &[&str] = &["fields", "meta", "member_key"];

/// Where the current value of `field` (a field an update or create of `kind` may set) is in
/// the mirror; `None` when the mirror cannot tell (see [`UNREADABLE`]).
pub fn current_value(kind: ObjectKind, field: &str) -> Option<Current> {
    match (kind, field) {
        _ if UNREADABLE.contains(&field) => None,
        // The API takes the manager flat and returns it nested.
        (K::Partnership, "manager_email") => Some(Current::RawText(&["manager", "email"])),
        (K::Partnership, "manager_name") => Some(Current::RawText(&["manager", "name"])),
        _ => kind.columns().iter().find(|c| c.name == field).map(|c| Current::Column(c.name)),
    }
}

/// Whether a push can keep `kind` in step: the write-back queue can update its records, or
/// create them with a natural key to find them by (so a create is never sent twice).
pub fn pushable(kind: ObjectKind) -> bool {
    Operation::Update.applies_to(kind) || (Operation::Create.applies_to(kind) && !natural_keys(kind).is_empty())
}

/// Natural keys whose values are compared without regard to case.
pub fn case_insensitive(field: &str) -> bool {
    field == "email"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_rule_and_writable_field_belongs_to_an_operation_that_applies_to_its_object() {
        for &op in Operation::ALL {
            for kind in ObjectKind::ALL {
                if op.applies_to(kind) {
                    continue;
                }
                let (rules, fields) = (op.payload_rules(kind), op.writable_fields(kind));
                assert!(rules.is_empty(), "{op} {kind}: rules for an object it does not apply to");
                assert!(fields.is_empty(), "{op} {kind}: writable fields for an object it does not apply to");
            }
        }
    }

    #[test]
    fn required_fields_are_writable_and_natural_keys_are_writable_by_create() {
        for &op in Operation::ALL {
            for &kind in op.kinds() {
                for rule in op.payload_rules(kind) {
                    if let PayloadRule::Required(fields) | PayloadRule::ExactlyOne(fields) = rule {
                        for field in *fields {
                            assert!(op.writable_fields(kind).contains(field), "{op} {kind}: required {field} is not writable");
                        }
                    }
                }
            }
        }
        for kind in ObjectKind::ALL {
            for field in natural_keys(kind) {
                assert!(Operation::Create.writable_fields(kind).contains(field), "{kind}: natural key {field} cannot be created");
            }
        }
    }

    #[test]
    fn every_field_an_update_sets_can_be_read_from_the_mirror_unless_it_is_known_not_to_come_back() {
        for kind in ObjectKind::ALL {
            for field in Operation::Update.writable_fields(kind).iter().chain(Operation::ModifyTags.applies_to(kind).then_some(&"tags")) {
                match current_value(kind, field) {
                    Some(Current::Column(column)) => assert!(kind.columns().iter().any(|c| c.name == column), "{kind}.{field}"),
                    Some(Current::RawText(path)) => assert!(!path.is_empty(), "{kind}.{field}"),
                    None => assert!(UNREADABLE.contains(field), "{kind}.{field}: an update sets it and the mirror cannot read it"),
                }
            }
        }
        assert_eq!(current_value(ObjectKind::Partnership, "group_key"), Some(Current::Column("group_key")));
        assert_eq!(current_value(ObjectKind::Partnership, "manager_email"), Some(Current::RawText(&["manager", "email"])));
        assert_eq!(current_value(ObjectKind::Customer, "meta"), None);
    }

    #[test]
    fn only_objects_the_queue_can_update_or_create_by_a_natural_key_can_be_pushed() {
        let pushable: Vec<ObjectKind> = ObjectKind::ALL.into_iter().filter(|k| pushable(*k)).collect();
        assert_eq!(pushable, [ObjectKind::Partnership, ObjectKind::Customer, ObjectKind::Deal, ObjectKind::Lead, ObjectKind::Transaction]);
    }

    #[test]
    fn every_operation_parses_from_its_name() {
        for &op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
        }
        assert!("archive".parse::<Operation>().is_err());
        assert_eq!(Operation::FetchAttachments.to_string(), "fetch_attachments");
    }
}

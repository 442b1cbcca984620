//! The write queue's checks and trigger functions, generated from the write-back catalogue
//! (`crate::write_back`) and the object catalogue (`crate::object`), so the database admits
//! exactly the requests the workers can carry out. Applied with the reporting layer at every
//! start whose generated statements differ (`reporting::apply_in`); the triggers that call
//! these functions were made by the migrations and keep calling them by name.
//!
//! Each function is created with its `search_path` pinned to the schema, then `pg_catalog`.

use std::fmt::Write;

use super::{quote_identifier, reporting::literal};
use crate::{
    object::ObjectKind,
    write_back::{case_insensitive, natural_keys, Operation, PayloadRule},
};

/// The three functions, as `CREATE OR REPLACE FUNCTION` statements.
pub fn statements(schema: &str) -> String {
    let pinned = format!("SET search_path = {}, pg_catalog", quote_identifier(schema));
    [catalogue(&pinned), check(&pinned), touches(&pinned)].join("")
}

fn array(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| literal(i.as_ref())).collect();
    if items.is_empty() {
        "ARRAY[]::text[]".into()
    } else {
        format!("ARRAY[{}]", items.join(", "))
    }
}

/// `object_type` as events name it (`deal`), or a message saying which one was meant.
fn catalogue(pinned: &str) -> String {
    let known: Vec<&str> = {
        let mut names: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.singular()).collect();
        names.sort_unstable();
        names
    };
    let mut meant = String::new();
    for kind in ObjectKind::ALL {
        let singular_table = kind.table().strip_suffix('s').unwrap_or(kind.table());
        let mut aliases = vec![kind.singular(), kind.table(), singular_table];
        aliases.dedup();
        for alias in aliases {
            let _ = write!(meant, " WHEN {} THEN {}", literal(alias), literal(kind.singular()));
        }
    }
    format!(
        "CREATE OR REPLACE FUNCTION write_queue_catalogue() RETURNS trigger LANGUAGE plpgsql {pinned} AS $fn$
DECLARE
    meant text;
BEGIN
    IF NEW.object_type IS NULL OR NEW.object_type = ANY ({known}) THEN
        RETURN NEW;
    END IF;
    meant := CASE replace(lower(btrim(NEW.object_type)), '-', '_'){meant} END;
    IF meant IS NOT NULL THEN
        RAISE EXCEPTION 'write_queue: unknown object_type \"%\"; write \"%\" (singular, lower case, as in events.object_type)',
            NEW.object_type, meant USING ERRCODE = 'check_violation';
    END IF;
    RAISE EXCEPTION 'write_queue: unknown object_type \"%\"', NEW.object_type
        USING ERRCODE = 'check_violation', HINT = {hint};
END
$fn$;
",
        known = array(&known),
        hint = literal(&format!("object types: {}", known.join(", "))),
    )
}

/// The operation applies to the object type, and the payload holds what the API requires.
fn check(pinned: &str) -> String {
    let mut allowed = String::new();
    for &op in Operation::ALL {
        let kinds = op.kinds().iter().map(|k| k.singular());
        let _ = write!(allowed, "\n        WHEN {} THEN {}", literal(op.as_str()), array(kinds));
    }
    let operations: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
    let keyless: Vec<&str> = Operation::ALL.iter().filter(|o| !o.needs_object_key()).map(|o| o.as_str()).collect();
    let mut rules = String::new();
    for &op in Operation::ALL {
        for &kind in op.kinds() {
            for rule in op.payload_rules(kind) {
                rules.push_str(&payload_rule(op, kind, rule));
            }
        }
    }
    format!(
        "CREATE OR REPLACE FUNCTION write_queue_check() RETURNS trigger LANGUAGE plpgsql {pinned} AS $fn$
DECLARE
    allowed text[];
    missing text[];
BEGIN
    allowed := CASE NEW.operation{allowed}
    END;
    IF allowed IS NULL THEN
        RAISE EXCEPTION 'write_queue: unknown operation \"%\"', NEW.operation
            USING ERRCODE = 'check_violation', HINT = {operations};
    END IF;
    IF NOT NEW.object_type = ANY (allowed) THEN
        RAISE EXCEPTION 'write_queue: operation \"%\" is not allowed for object_type \"%\"', NEW.operation, NEW.object_type
            USING ERRCODE = 'check_violation', HINT = format('\"%s\" applies to: %s', NEW.operation, array_to_string(allowed, ', '));
    END IF;
    IF jsonb_typeof(NEW.payload) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'write_queue: payload must be a JSON object' USING ERRCODE = 'check_violation';
    END IF;
    IF NOT NEW.operation = ANY ({keyless}) AND coalesce(btrim(NEW.object_key), '') = '' THEN
        RAISE EXCEPTION 'write_queue: operation \"%\" needs object_key (the record''s key in the mirror)', NEW.operation
            USING ERRCODE = 'check_violation';
    END IF;
{rules}    RETURN NEW;
END
$fn$;
",
        operations = literal(&format!("operations: {}", operations.join(", "))),
        keyless = array(&keyless),
    )
}

/// One rule of one operation on one object type, as a PL/pgSQL `IF`.
fn payload_rule(op: Operation, kind: ObjectKind, rule: &PayloadRule) -> String {
    let when = format!("NEW.operation = {} AND NEW.object_type = {}", literal(op.as_str()), literal(kind.singular()));
    let prefix = format!("write_queue: {op} {} payload", kind.singular());
    let fail = |condition: String, message: String| {
        format!(
            "    IF {when} AND {condition} THEN\n        RAISE EXCEPTION {} USING ERRCODE = 'check_violation';\n    END IF;\n",
            literal(&message)
        )
    };
    match rule {
        PayloadRule::Required(fields) => format!(
            "    IF {when} THEN
        SELECT array_agg(f) INTO missing FROM unnest({fields}) AS f WHERE NOT NEW.payload ? f;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '{prefix} is missing required field(s): %', array_to_string(missing, ', ')
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
",
            fields = array(fields.iter()),
        ),
        PayloadRule::AtLeastOne(fields, meaning) => {
            fail(format!("NOT (NEW.payload ?| {})", array(fields.iter())), format!("{prefix} needs {meaning}"))
        }
        PayloadRule::ExactlyOne(fields) => fail(
            format!("(SELECT count(*) FROM unnest({}) AS f WHERE NEW.payload ? f) <> 1", array(fields.iter())),
            format!("{prefix} needs exactly one of {}", fields.join(", ")),
        ),
        PayloadRule::Arrays(fields) => fields
            .iter()
            .map(|field| {
                fail(
                    format!("NEW.payload ? {f} AND jsonb_typeof(NEW.payload -> {f}) <> 'array'", f = literal(field)),
                    format!("write_queue: {op} \"{field}\" must be an array"),
                )
            })
            .collect(),
    }
}

/// The records a request touches, for its order with other requests for the same record
/// (migration 0005): `deal:<key>` for a record addressed by its mirror key;
/// `deal@external_key=<value>` for each natural key a create's payload carries; a convert
/// touches the lead or deal and the customer it makes (`customer@customer_key=<value>`, which
/// for a lead defaults to the lead's `external_key`).
fn touches(pinned: &str) -> String {
    let mut keys = String::new();
    for kind in ObjectKind::ALL.into_iter().filter(|k| !natural_keys(*k).is_empty()) {
        let _ = write!(keys, " WHEN {} THEN {}", literal(kind.singular()), array(natural_keys(kind)));
    }
    let lowered: Vec<&str> = ObjectKind::ALL.iter().flat_map(|k| natural_keys(*k)).copied().filter(|f| case_insensitive(f)).collect();
    let customer_key = natural_keys(ObjectKind::Customer)[0];
    format!(
        "CREATE OR REPLACE FUNCTION write_queue_touches(operation text, object_type text, object_key text, payload jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE {pinned} AS $fn$
DECLARE
    made text;
BEGIN
    IF operation = 'create' THEN
        RETURN coalesce(ARRAY(
            SELECT object_type || '@' || f || '=' || CASE WHEN f = ANY ({lowered}) THEN lower(payload ->> f) ELSE payload ->> f END
            FROM unnest(CASE object_type{keys} ELSE ARRAY[]::text[] END) AS f
            WHERE coalesce(payload ->> f, '') <> ''), ARRAY[]::text[]);
    END IF;
    IF operation = 'convert' THEN
        made := nullif(payload ->> {customer_key}, '');
        IF made IS NULL AND object_type = 'lead' THEN
            SELECT nullif(l.raw ->> 'external_key', '') INTO made FROM leads l WHERE l.key = object_key;
        END IF;
        RETURN ARRAY[object_type || ':' || object_key]
            || CASE WHEN made IS NULL THEN ARRAY[]::text[] ELSE ARRAY['customer@' || {customer_key} || '=' || made] END;
    END IF;
    RETURN ARRAY[object_type || ':' || object_key];
END
$fn$;
",
        lowered = array(&lowered),
        customer_key = literal(customer_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_and_rule_of_the_catalogue_is_in_the_generated_check() {
        let sql = statements("partnerstack");
        for &op in Operation::ALL {
            assert!(sql.contains(&format!("WHEN '{}' THEN", op.as_str())), "{op}");
        }
        assert!(sql.contains("create transaction payload needs exactly one of customer_key, customer_external_key, customer_email"));
        assert!(sql.contains("create customer payload is missing required field(s)"));
        assert!(sql.contains("WHEN 'partner_team_members' THEN 'partner_team'"));
        assert_eq!(sql.matches("SET search_path = \"partnerstack\", pg_catalog").count(), 3, "every function is pinned");
    }

    #[test]
    fn the_generated_functions_are_the_same_text_on_every_call() {
        assert_eq!(statements("ps"), statements("ps"));
    }
}

//! JSON ⇄ DynamoDB attribute values, so records are plain `serde` types.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Number, Value};

use crate::error::Error;
use crate::platform::aws::AwsResultExt;

pub type Item = HashMap<String, AttributeValue>;

pub fn to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attr).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

pub fn from_attr(attr: &AttributeValue) -> Value {
    match attr {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attr).collect()),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_attr(v)))
                .collect::<Map<_, _>>(),
        ),
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        AttributeValue::Ns(items) => Value::Array(
            items
                .iter()
                .map(|n| {
                    n.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(n.clone()))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A serializable record as an item; `null` fields are left out (DynamoDB has no use for them).
pub fn to_item<T: Serialize>(record: &T) -> Item {
    match serde_json::to_value(record).expect("records serialize") {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), to_attr(v)))
            .collect(),
        other => panic!("record must serialize to an object, got {other}"),
    }
}

pub fn item_to_value(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), from_attr(v)))
            .collect(),
    )
}

pub fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T, Error> {
    serde_json::from_value(item_to_value(item))
        .map_err(|e| Error::Corrupt(format!("stored record does not match its schema: {e}")))
}

/// One item by its full key (a consistent read).
pub async fn get_item(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    key: Item,
) -> Result<Option<Item>, Error> {
    let out = db
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .aws("GetItem")?;
    Ok(out.item().cloned())
}

fn string_key(key: &[(&str, &str)]) -> Item {
    key.iter().map(|(k, v)| (k.to_string(), s(*v))).collect()
}

/// One item by its (string) key attributes (a consistent read), as a record.
pub async fn get<T: DeserializeOwned>(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &[(&str, &str)],
) -> Result<Option<T>, Error> {
    get_item(db, table, string_key(key))
        .await?
        .as_ref()
        .map(from_item)
        .transpose()
}

/// `SET` top-level `fields` of an existing item if `condition` holds (an extra expression;
/// each `#name` in it stands for the attribute `name`, each `:value` comes from `values`).
/// Returns the item as it is after the update, or `None` when the item does not exist or the
/// condition did not hold.
pub async fn set_fields(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &[(&str, &str)],
    fields: &[(&str, Value)],
    condition: Option<&str>,
    values: &[(&str, Value)],
) -> Result<Option<Item>, Error> {
    use crate::platform::aws::ConditionalExt;
    use aws_sdk_dynamodb::types::ReturnValue;
    let mut req = db
        .update_item()
        .table_name(table)
        .set_key(Some(string_key(key)))
        .return_values(ReturnValue::AllNew);
    let mut sets = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        sets.push(format!("#f{i} = :f{i}"));
        req = req
            .expression_attribute_names(format!("#f{i}"), *name)
            .expression_attribute_values(format!(":f{i}"), to_attr(value));
    }
    let exists = "attribute_exists(#k0)".to_string();
    req = req.expression_attribute_names("#k0", key[0].0);
    let cond = match condition {
        Some(extra) => {
            for name in placeholders(extra) {
                req = req.expression_attribute_names(format!("#{name}"), name);
            }
            format!("{exists} AND ({extra})")
        }
        None => exists,
    };
    for (k, v) in values {
        req = req.expression_attribute_values(*k, to_attr(v));
    }
    let out = req
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression(cond)
        .send()
        .await
        .aws("UpdateItem")
        .conditional()?;
    Ok(out.and_then(|o| o.attributes().cloned()))
}

/// The attribute names behind the `#name` placeholders of an expression.
fn placeholders(expr: &str) -> Vec<&str> {
    let mut out: Vec<&str> = expr
        .split('#')
        .skip(1)
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The items of `index` whose partition `key` is `value`, newest (highest sort key) first.
pub async fn query_newest(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    index: &str,
    key: &str,
    value: &str,
    limit: Option<i32>,
) -> Result<Vec<Item>, Error> {
    let out = db
        .query()
        .table_name(table)
        .index_name(index)
        .key_condition_expression("#k = :v")
        .expression_attribute_names("#k", key)
        .expression_attribute_values(":v", s(value))
        .scan_index_forward(false)
        .set_limit(limit)
        .send()
        .await
        .aws("Query")?;
    Ok(out.items().to_vec())
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let v = json!({"a": "x", "n": 5, "f": 1.5, "b": true, "l": [1, "two"], "m": {"k": "v"}});
        let item: Item = match to_attr(&v) {
            AttributeValue::M(m) => m,
            _ => unreachable!(),
        };
        assert_eq!(item_to_value(&item), v);
    }

    #[test]
    fn condition_placeholders_are_found() {
        assert_eq!(
            placeholders(
                "#status IN (:a, :b) AND attribute_not_exists(#cancelled_by) OR #status = :c"
            ),
            vec!["cancelled_by", "status"]
        );
        assert!(placeholders("attribute_not_exists(approval)").is_empty());
    }

    #[test]
    fn nulls_are_dropped() {
        #[derive(Serialize)]
        struct R {
            a: Option<String>,
            b: String,
        }
        let item = to_item(&R {
            a: None,
            b: "x".into(),
        });
        assert!(!item.contains_key("a"));
        assert_eq!(item.get("b"), Some(&s("x")));
    }
}

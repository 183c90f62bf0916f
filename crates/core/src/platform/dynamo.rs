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

/// A record kept in one DynamoDB table under a single string partition key.
pub trait Record: Serialize + DeserializeOwned {
    /// The partition key attribute, e.g. `runId`.
    const KEY: &'static str;
    /// This record's partition key value.
    fn key(&self) -> &str;
    /// The sort key attribute of a table whose key has two parts (e.g. `sk`); `None`: the
    /// partition key alone is the key.
    const SORT_KEY: Option<&'static str> = None;
    /// This record's sort key value, when [`Record::SORT_KEY`] is set.
    fn sort_key(&self) -> Option<&str> {
        None
    }
}

/// Whether a [`Table::put_once`] wrote the record or found one already there.
#[derive(Debug, Clone, PartialEq)]
pub enum Once<T> {
    /// Nobody wrote this key before: the record is now stored.
    First,
    /// The key was written before (a retried step, a duplicate event): what is stored.
    Seen(T),
}

impl<T> Once<T> {
    pub fn is_first(&self) -> bool {
        matches!(self, Once::First)
    }
}

/// One typed DynamoDB table: get, put, put-once (the one idempotency mechanism: a conditional
/// `attribute_not_exists` put that returns what is stored on a repeat), conditional field
/// updates and newest-first index queries. Built once in a step's `Deps`.
#[derive(Debug, Clone)]
pub struct Table<T> {
    db: aws_sdk_dynamodb::Client,
    name: String,
    record: std::marker::PhantomData<fn() -> T>,
}

impl<T: Record> Table<T> {
    pub fn new(db: aws_sdk_dynamodb::Client, name: impl Into<String>) -> Self {
        Table {
            db,
            name: name.into(),
            record: std::marker::PhantomData,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.db
    }

    /// The record under `key` (a consistent read).
    pub async fn get(&self, key: &str) -> Result<Option<T>, Error> {
        get(&self.db, &self.name, &[(T::KEY, key)]).await
    }

    /// The record under `key`, which must exist (`NotFound` naming it otherwise).
    pub async fn must_get(&self, key: &str) -> Result<T, Error> {
        self.get(key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{} {key} in {}", T::KEY, self.name)))
    }

    /// Write the whole record (last writer wins).
    pub async fn put(&self, record: &T) -> Result<(), Error> {
        self.db
            .put_item()
            .table_name(&self.name)
            .set_item(Some(to_item(record)))
            .send()
            .await
            .aws("PutItem")?;
        Ok(())
    }

    /// Write the record only if its key was never written: exactly one of any number of
    /// concurrent or repeated callers gets [`Once::First`]; the others get what is stored.
    pub async fn put_once(&self, record: &T) -> Result<Once<T>, Error> {
        use crate::platform::aws::ConditionalExt;
        let written = self
            .db
            .put_item()
            .table_name(&self.name)
            .set_item(Some(to_item(record)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", T::KEY)
            .send()
            .await
            .aws("PutItem")
            .conditional()?;
        match written {
            Some(_) => Ok(Once::First),
            None => match self.get_at(record.key(), record.sort_key()).await? {
                Some(stored) => Ok(Once::Seen(stored)),
                None => Err(Error::Corrupt(format!(
                    "{} {} in {} failed its put-once condition, then vanished",
                    T::KEY,
                    record.key(),
                    self.name
                ))),
            },
        }
    }

    /// The full key of a record: its partition key and, in a two-part key, its sort key.
    fn full_key<'a>(key: &'a str, sort: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let mut full = vec![(T::KEY, key)];
        if let (Some(attr), Some(value)) = (T::SORT_KEY, sort) {
            full.push((attr, value));
        }
        full
    }

    /// The record under `key` and, in a table with a two-part key, `sort` (a consistent read).
    pub async fn get_at(&self, key: &str, sort: Option<&str>) -> Result<Option<T>, Error> {
        get(&self.db, &self.name, &Self::full_key(key, sort)).await
    }

    /// [`Table::set_fields`] on the record under `key` and `sort` (a two-part key).
    pub async fn set_fields_at(
        &self,
        key: &str,
        sort: Option<&str>,
        fields: &[(&str, Value)],
        condition: Option<&str>,
        values: &[(&str, Value)],
    ) -> Result<Option<T>, Error> {
        set_fields(
            &self.db,
            &self.name,
            &Self::full_key(key, sort),
            fields,
            condition,
            values,
        )
        .await?
        .as_ref()
        .map(from_item)
        .transpose()
    }

    /// Add `n` to the number `field` of the existing record under `key` and `sort` (`ADD`: a
    /// missing field counts as 0; concurrent adds all count). `NotFound` when there is no record.
    pub async fn add_at(
        &self,
        key: &str,
        sort: Option<&str>,
        field: &str,
        n: i64,
    ) -> Result<(), Error> {
        use crate::platform::aws::ConditionalExt;
        let full = Self::full_key(key, sort);
        let added = self
            .db
            .update_item()
            .table_name(&self.name)
            .set_key(Some(string_key(&full)))
            .update_expression("ADD #f :n")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#f", field)
            .expression_attribute_names("#k", T::KEY)
            .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
            .send()
            .await
            .aws("UpdateItem")
            .conditional()?;
        added
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("{} {key} in {}", T::KEY, self.name)))
    }

    /// The records of `index` whose partition attribute `attr` is `value`, newest first, that
    /// `keep` accepts (an index over several kinds of item: pick the kind before parsing).
    pub async fn newest_where(
        &self,
        index: &str,
        attr: &str,
        value: &str,
        keep: impl Fn(&Item) -> bool,
    ) -> Result<Vec<T>, Error> {
        query_newest(&self.db, &self.name, index, attr, value, None)
            .await?
            .iter()
            .filter(|item| keep(item))
            .map(from_item)
            .collect()
    }

    /// `SET` top-level `fields` of the existing record under `key` if `condition` holds (see
    /// [`set_fields`]). `None`: no such record, or the condition did not hold.
    pub async fn set_fields(
        &self,
        key: &str,
        fields: &[(&str, Value)],
        condition: Option<&str>,
        values: &[(&str, Value)],
    ) -> Result<Option<T>, Error> {
        self.set_fields_at(key, None, fields, condition, values)
            .await
    }

    /// The records of `index` whose partition attribute `attr` is `value` and whose (string)
    /// sort attribute `sort` lies in `[from, to]`, oldest first, every page.
    pub async fn between(
        &self,
        index: &str,
        (attr, value): (&str, &str),
        (sort, from, to): (&str, &str, &str),
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(&self.name)
                .index_name(index)
                .key_condition_expression("#k = :v AND #s BETWEEN :from AND :to")
                .expression_attribute_names("#k", attr)
                .expression_attribute_names("#s", sort)
                .expression_attribute_values(":v", s(value))
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
                .scan_index_forward(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .aws("Query")?;
            for item in page.items() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// The records of `index` whose partition attribute `attr` is `value`, newest first.
    pub async fn newest(
        &self,
        index: &str,
        attr: &str,
        value: &str,
        limit: Option<i32>,
    ) -> Result<Vec<T>, Error> {
        query_newest(&self.db, &self.name, index, attr, value, limit)
            .await?
            .iter()
            .map(from_item)
            .collect()
    }
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

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Marker {
        marker_id: String,
        by: String,
    }

    impl Record for Marker {
        const KEY: &'static str = "markerId";
        fn key(&self) -> &str {
            &self.marker_id
        }
    }

    fn marker(by: &str) -> Marker {
        Marker {
            marker_id: "k1".into(),
            by: by.into(),
        }
    }

    #[tokio::test]
    async fn put_once_writes_with_a_condition_on_the_key() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && r.expression_attribute_names().and_then(|n| n.get("#k"))
                        == Some(&"markerId".to_string())
            })
            .then_output(|| {
                aws_sdk_dynamodb::operation::put_item::PutItemOutput::builder().build()
            });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]);
        let table: Table<Marker> = Table::new(db, "markers");
        assert_eq!(table.put_once(&marker("a")).await.unwrap(), Once::First);
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn put_once_returns_what_is_stored_on_a_repeat() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let put = crate::testing::put_item_exists();
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                .set_item(Some(to_item(&marker("first"))))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let table: Table<Marker> = Table::new(db, "markers");
        let got = table.put_once(&marker("second")).await.unwrap();
        assert_eq!(got, Once::Seen(marker("first")));
    }

    #[tokio::test]
    async fn put_once_that_finds_nothing_after_failing_is_corrupt() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let put = crate::testing::put_item_exists();
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let table: Table<Marker> = Table::new(db, "markers");
        let err = table.put_once(&marker("x")).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Corrupt);
    }
}

//! One embedded id, in whichever form it is, and the caller's translation function.

use serde_json::Value;
use uuid::Uuid;

use crate::Result;

/// What an embedded id refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// `slices.id` — a chart.
    Chart,
    /// `tables.id` — a dataset.
    Dataset,
    /// `annotation_layer.id`.
    AnnotationLayer,
}

/// An embedded id in one of its forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EmbeddedId {
    /// A region-local integer id (local form only).
    Local(i64),
    /// The uuid of the row (canonical form).
    Uuid(Uuid),
    /// An id that named no row this region ever knew, as a stable token kept in both forms.
    Dangling(String),
}

/// Prefix of [`EmbeddedId::Dangling`] tokens: `dangling:<region>:<local id>`.
pub const DANGLING_PREFIX: &str = "dangling:";

/// The caller's map from one form to the other (local → canonical when capturing, canonical →
/// local when applying). Returning `Err` aborts the translation of the column.
pub trait Translate {
    fn translate(&mut self, kind: RefKind, id: EmbeddedId) -> Result<EmbeddedId>;
}

impl<F: FnMut(RefKind, EmbeddedId) -> Result<EmbeddedId>> Translate for F {
    fn translate(&mut self, kind: RefKind, id: EmbeddedId) -> Result<EmbeddedId> {
        self(kind, id)
    }
}

impl EmbeddedId {
    /// Reads an id from a JSON value slot: a local id is a JSON number (Superset writes ids in
    /// value slots as numbers; a numeric *string* there is not an id, so it comes back as it
    /// was), a canonical one a uuid string or a dangling token. Anything else is left alone.
    pub fn from_json(value: &Value) -> Option<EmbeddedId> {
        match value {
            Value::Number(n) => n.as_i64().map(EmbeddedId::Local),
            Value::String(s) => match EmbeddedId::from_text(s) {
                Some(EmbeddedId::Local(_)) | None => None,
                canonical => canonical,
            },
            _ => None,
        }
    }

    /// Reads an id from text (an object key, a part of a string).
    pub fn from_text(text: &str) -> Option<EmbeddedId> {
        if text.starts_with(DANGLING_PREFIX) {
            return Some(EmbeddedId::Dangling(text.to_owned()));
        }
        // Only the canonical decimal form is an id ("05" or "+5" are not what Superset writes, and
        // would not come back byte-for-byte).
        if let Ok(n) = text.parse::<i64>() {
            return (n.to_string() == text).then_some(EmbeddedId::Local(n));
        }
        Uuid::try_parse(text).ok().map(EmbeddedId::Uuid)
    }

    /// The id as a JSON slot holds it: local ids as numbers, the others as strings.
    pub fn to_json(&self) -> Value {
        match self {
            EmbeddedId::Local(n) => Value::from(*n),
            EmbeddedId::Uuid(u) => Value::String(u.to_string()),
            EmbeddedId::Dangling(token) => Value::String(token.clone()),
        }
    }

    /// The id as text (object keys, `"<id>__table"`).
    pub fn to_text(&self) -> String {
        match self {
            EmbeddedId::Local(n) => n.to_string(),
            EmbeddedId::Uuid(u) => u.to_string(),
            EmbeddedId::Dangling(token) => token.clone(),
        }
    }
}

/// Translates the id in one JSON slot in place; a slot that holds no id is left alone.
pub(crate) fn slot(value: &mut Value, kind: RefKind, t: &mut dyn Translate) -> Result<()> {
    if let Some(id) = EmbeddedId::from_json(value) {
        *value = t.translate(kind, id)?.to_json();
    }
    Ok(())
}

/// Translates every element of a JSON array (absent or not an array: nothing to do).
pub(crate) fn array(value: Option<&mut Value>, kind: RefKind, t: &mut dyn Translate) -> Result<()> {
    if let Some(Value::Array(items)) = value {
        for item in items {
            slot(item, kind, t)?;
        }
    }
    Ok(())
}

/// Translates the keys of a JSON object whose keys are ids; keys that are not ids stay.
pub(crate) fn keys(value: Option<&mut Value>, kind: RefKind, t: &mut dyn Translate) -> Result<()> {
    if let Some(Value::Object(map)) = value {
        let old = std::mem::take(map);
        for (key, v) in old {
            let key = match EmbeddedId::from_text(&key) {
                Some(id) => t.translate(kind, id)?.to_text(),
                None => key,
            };
            map.insert(key, v);
        }
    }
    Ok(())
}

/// Follows a path of object keys.
pub(crate) fn at<'v>(value: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, key| v.get_mut(*key))
}

//! Objects decoded one by one: whole, or only their identity and the field that failed.
//!
//! kube decodes a list page as one `Vec<K>`, so a single object our types reject (one admitted
//! by an older, looser CRD; a status written by a newer controller) fails the whole list.
//! Listing, watching or reading as [`Lenient<K>`] instead never fails on such an object: the
//! controller skips and reports it, the CLI warns about it.

use std::borrow::Cow;

use kube::Resource;
use kube::api::ObjectMeta;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

/// An object as the watch decoded it: whole, or only its identity and why the rest failed.
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    Decoded(K),
    /// Boxed: rare, and larger than most decoded objects' handles.
    Undecodable(Box<Undecodable>),
}

impl<K> Lenient<K> {
    /// A deleted object known only by its identity (a deletion carries nothing else).
    pub fn tombstone(metadata: ObjectMeta) -> Self {
        Lenient::Undecodable(Box::new(Undecodable {
            metadata,
            error: String::new(),
        }))
    }
}

/// What is kept of an object that failed to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Undecodable {
    /// Name, namespace, uid, resourceVersion and generation; nothing else.
    pub metadata: ObjectMeta,
    /// The field that failed and why, e.g. `spec.replicas: invalid value: integer
    /// `3000000000`, expected i32`.
    pub error: String,
}

/// Decodes `value` as a `K`, or keeps its identity and the failing field's path. Fails only when
/// not even `metadata` decodes (the API server validates it, so that is not an object at all).
pub fn decode<K: DeserializeOwned>(mut value: serde_json::Value) -> Result<Lenient<K>, String> {
    // The plain decode first: tracking the path costs, and only a failure needs it.
    if let Ok(k) = K::deserialize(&value) {
        return Ok(Lenient::Decoded(k));
    }
    match serde_path_to_error::deserialize::<_, K>(&value) {
        Ok(k) => Ok(Lenient::Decoded(k)),
        Err(e) => {
            let meta = value
                .get_mut("metadata")
                .map(serde_json::Value::take)
                .unwrap_or_default();
            let full = ObjectMeta::deserialize(meta).map_err(|m| format!("metadata: {m}"))?;
            Ok(Lenient::Undecodable(Box::new(Undecodable {
                metadata: ObjectMeta {
                    name: full.name,
                    namespace: full.namespace,
                    uid: full.uid,
                    resource_version: full.resource_version,
                    generation: full.generation,
                    ..Default::default()
                },
                error: format!("{}: {}", e.path(), e.inner()),
            })))
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        decode(value).map_err(serde::de::Error::custom)
    }
}

impl<K: Resource> Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Decoded(k) => k.meta(),
            Self::Undecodable(u) => &u.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Decoded(k) => k.meta_mut(),
            Self::Undecodable(u) => &mut u.metadata,
        }
    }
}

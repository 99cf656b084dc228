//! Reads: one object, pages of objects with selectors and continue tokens, memory statistics.

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc};

use super::{Obj, Store, object_key};
use crate::{
    error::{ApiError, ApiResult},
    resources::{GroupResource, ResourceInfo},
    selector::{FieldSelector, LabelSelector},
};

/// Which objects a list or watch wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether an object passes.
    pub fn matches(&self, info: &ResourceInfo, obj: &Obj) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| ns.is_empty() || *obj.namespace == *ns)
            && self.labels.matches(|k| obj.label(k))
            && self.fields.matches(|f| obj.field(info, f))
    }

    /// Rejects field selectors naming fields the type does not index.
    pub fn check(&self, info: &ResourceInfo) -> ApiResult<()> {
        for term in &self.fields.0 {
            if !info.field_is_selectable(&term.field) {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {}",
                    term.field
                )));
            }
        }
        Ok(())
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The objects, in namespace/name order.
    pub items: Vec<Arc<Obj>>,
    /// The store's version at the time of the list.
    pub rv: u64,
    /// The token for the next page.
    pub continue_token: Option<String>,
    /// Objects after this page (when no selector filters them).
    pub remaining: Option<u64>,
}

impl Store {
    /// One object.
    pub fn get(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<Arc<Obj>> {
        self.lock()
            .get(&info.key(), namespace, name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// The object with a uid, wherever it is.
    pub fn get_by_uid(&self, uid: &str) -> Option<(GroupResource, Arc<Obj>)> {
        let inner = self.lock();
        let loc = inner.uids.get(uid)?;
        let obj = inner.tables.get(&loc.resource)?.objects.get(&loc.key)?;
        Some((loc.resource.clone(), obj.clone()))
    }

    /// A page of objects.
    pub fn list(
        &self,
        info: &ResourceInfo,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> ApiResult<ListPage> {
        filter.check(info)?;
        let inner = self.lock();
        let start = continue_token.map(decode_continue).transpose()?;
        let table = inner.tables.get(&info.key());
        if let (Some((rv, _)), Some(t)) = (&start, table)
            && *rv < t.compacted
        {
            return Err(ApiError::ContinueExpired);
        }
        let mut page = ListPage {
            items: Vec::new(),
            rv: start.as_ref().map_or(inner.rv, |(rv, _)| *rv),
            continue_token: None,
            remaining: None,
        };
        let Some(table) = table else {
            return Ok(page);
        };
        let prefix: Option<String> = filter
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty() && info.namespaced)
            .map(|ns| format!("{ns}\0"));
        let lower: std::ops::Bound<&str> = match (&start, &prefix) {
            (Some((_, key)), _) => std::ops::Bound::Excluded(key.as_str()),
            (None, Some(p)) => std::ops::Bound::Included(p.as_str()),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let mut iter = table
            .objects
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| prefix.as_deref().is_none_or(|p| k.starts_with(p)))
            .filter(|(_, obj)| filter.matches(info, obj));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        for (_, obj) in iter.by_ref().take(limit) {
            page.items.push(obj.clone());
        }
        if page.items.len() == limit {
            // remainingItemCount is only reported without selectors (as the API server does), so
            // only then is the rest of the table counted; otherwise one more match is enough.
            let unfiltered = filter.labels.is_empty() && filter.fields.0.is_empty();
            let rest = if unfiltered {
                iter.count()
            } else {
                usize::from(iter.next().is_some())
            };
            if rest > 0 {
                if let Some(last) = page.items.last() {
                    page.continue_token =
                        Some(encode_continue(page.rv, &object_key(&last.namespace, &last.name)));
                }
                if unfiltered {
                    page.remaining = Some(rest as u64);
                }
            }
        }
        Ok(page)
    }

    /// Counts of objects per type and the bytes their JSON holds, for memory reports.
    pub fn stats(&self) -> BTreeMap<String, (usize, usize)> {
        let inner = self.lock();
        inner
            .tables
            .iter()
            .map(|(k, t)| {
                let bytes = t.objects.values().map(|o| o.heap_size()).sum();
                (format!("{}.{}", k.resource, k.group), (t.objects.len(), bytes))
            })
            .collect()
    }
}

fn encode_continue(rv: u64, key: &str) -> String {
    let raw = format!("{rv}:{key}");
    raw.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn decode_continue(token: &str) -> ApiResult<(u64, String)> {
    let bad = || ApiError::BadRequest(format!("invalid continue token \"{token}\""));
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (rv, key) = text.split_once(':').ok_or_else(bad)?;
    Ok((rv.parse().map_err(|_| bad())?, key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "default\0web");
        assert_eq!(decode_continue(&token).unwrap(), (42, "default\0web".into()));
        assert!(decode_continue("zz").is_err());
        assert!(decode_continue("abc").is_err());
    }
}

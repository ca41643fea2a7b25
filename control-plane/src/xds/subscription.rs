//! What one stream subscribes to for one resource type, and what the client
//! already has. Shared by state-of-the-world and Delta: both ask the same
//! question ("what changed for this client since it last heard from us?")
//! and differ only in how they phrase the answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::snapshot::Resource;

/// The wildcard resource name.
pub(crate) const WILDCARD: &str = "*";

/// What `known` records for a resource the client may hold at a version we
/// do not know: no resource has this version, so the next diff re-sends the
/// resource if it exists and reports it removed if it does not.
const UNKNOWN_VERSION: &str = "";

/// Subscription state of one resource type on one stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Subscription {
    /// Subscribed to every resource of the type.
    wildcard: bool,
    /// Wildcard because the first request named nothing (legacy form): later
    /// empty requests keep it.
    legacy_wildcard: bool,
    /// Explicitly subscribed names (never contains `*`); shared with the
    /// admin view, copied only when changed while shared.
    names: Arc<BTreeSet<String>>,
    /// What the client has: `Some(version)`, or `None` when we told it the
    /// resource does not exist.
    known: HashMap<String, Option<String>>,
    /// Bumped by every change of the names or of what the client has, so
    /// the admin view of them is rebuilt only when it changed.
    revision: u64,
    /// Whether any request for this type arrived on the stream.
    started: bool,
}

/// The changes a client has not heard of yet.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    /// Resources the client lacks or has at another version.
    pub(crate) updated: Vec<Arc<Resource>>,
    /// Names that are gone (or never existed) that the client should learn of.
    pub(crate) removed: Vec<String>,
}

impl Diff {
    pub(crate) fn is_empty(&self) -> bool {
        self.updated.is_empty() && self.removed.is_empty()
    }
}

/// What a request did to the subscription.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// The first request for the type on this stream.
    pub(crate) first: bool,
    /// Names (or the wildcard) were added: they must be answered.
    pub(crate) added: bool,
    /// Names were removed.
    pub(crate) removed: bool,
}

impl Subscription {
    /// Whether `name` is in scope.
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    pub(crate) fn names(&self) -> &Arc<BTreeSet<String>> {
        &self.names
    }

    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// State-of-the-world: the request's `resource_names` replace the set.
    ///
    /// An empty list on the first request is a (legacy) wildcard; it stays
    /// wildcard while later requests are empty too. Otherwise an empty list
    /// unsubscribes from everything. `*` in the list is an explicit wildcard.
    pub(crate) fn replace(&mut self, requested: &[String]) -> Change {
        let first = !self.started;
        self.started = true;
        let was_wildcard = self.wildcard;
        if requested.is_empty() && (first || self.legacy_wildcard) {
            self.legacy_wildcard = true;
            self.wildcard = true;
            let removed = !self.names.is_empty();
            if removed || first || !was_wildcard {
                self.revision += 1;
            }
            if removed {
                self.names = Arc::default();
            }
            self.prune();
            return Change {
                first,
                added: !was_wildcard,
                removed,
            };
        }
        self.legacy_wildcard = false;
        self.wildcard = requested.iter().any(|n| n == WILDCARD);
        let next: BTreeSet<String> = requested
            .iter()
            .filter(|n| n.as_str() != WILDCARD)
            .cloned()
            .collect();
        let added =
            (self.wildcard && !was_wildcard) || next.difference(&self.names).next().is_some();
        let removed =
            (was_wildcard && !self.wildcard) || self.names.difference(&next).next().is_some();
        if first || added || removed {
            self.revision += 1;
        }
        self.names = Arc::new(next);
        self.prune();
        Change {
            first,
            added,
            removed,
        }
    }

    /// Delta: first request of the type. `initial` is what the client says it
    /// already has (after a reconnect).
    pub(crate) fn start_delta(
        &mut self,
        subscribe: &[String],
        unsubscribe: &[String],
        initial: &HashMap<String, String>,
    ) -> Change {
        self.revision += 1;
        self.started = true;
        if subscribe.is_empty() {
            self.legacy_wildcard = true;
            self.wildcard = true;
        }
        // What the client has before this request: its unsubscribes apply
        // to it as to any later request's.
        self.known = initial
            .iter()
            .map(|(name, version)| (name.clone(), Some(version.clone())))
            .collect();
        let mut change = self.update_delta(subscribe, unsubscribe);
        change.first = true;
        change.added = true;
        change
    }

    /// Delta: a later request adds and removes names.
    pub(crate) fn update_delta(&mut self, subscribe: &[String], unsubscribe: &[String]) -> Change {
        let mut change = Change::default();
        for name in subscribe {
            if name == WILDCARD {
                change.added |= !self.wildcard;
                self.wildcard = true;
            } else if !self.names.contains(name)
                && Arc::make_mut(&mut self.names).insert(name.clone())
            {
                // Out of scope until now, so not known: it will be sent.
                // Known through the wildcard, or claimed in a first
                // request, the client has it.
                change.added = true;
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                change.removed |= self.wildcard;
                self.wildcard = false;
                self.legacy_wildcard = false;
            } else if self.names.contains(name) && Arc::make_mut(&mut self.names).remove(name) {
                change.removed = true;
                // The client forgets it; if the wildcard still covers it the
                // client expects it again. A client may also keep it as a
                // wildcard resource (Envoy does): one it has at some version
                // is then re-sent if it exists and reported removed if not.
                let held = matches!(self.known.remove(name), Some(Some(_)));
                if self.wildcard && held {
                    self.known
                        .insert(name.clone(), Some(UNKNOWN_VERSION.to_string()));
                }
                change.added |= self.wildcard;
            }
        }
        self.prune();
        if change.added || change.removed {
            self.revision += 1;
        }
        change
    }

    /// Forgets which version of `name` the client has, so the next diff
    /// re-sends it, or reports it removed if it is gone by then (used after a
    /// Cluster or Listener changed: its assignment or route configuration
    /// must follow).
    pub(crate) fn forget(&mut self, name: &str) -> bool {
        self.revision += 1;
        match self.known.get_mut(name) {
            Some(Some(version)) => {
                *version = UNKNOWN_VERSION.to_string();
                self.covers(name)
            }
            Some(None) => {
                self.known.remove(name);
                self.covers(name)
            }
            None => false,
        }
    }

    /// Up to `limit` resources the client has, sorted by name.
    /// Changes whenever `names` or `known` may have.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn known(&self, limit: usize) -> Vec<(String, Option<String>)> {
        let mut known: Vec<(String, Option<String>)> = self
            .known
            .iter()
            .map(|(name, version)| (name.clone(), version.clone()))
            .collect();
        known.sort();
        known.truncate(limit);
        known
    }

    /// What the client is missing compared to `resources`.
    pub(crate) fn diff(&self, resources: &BTreeMap<String, Arc<Resource>>) -> Diff {
        let mut diff = Diff::default();
        let mut consider = |resource: &Arc<Resource>| match self.known.get(&resource.name) {
            Some(Some(version)) if *version == resource.version => {}
            _ => diff.updated.push(resource.clone()),
        };
        if self.wildcard {
            resources.values().for_each(&mut consider);
            for name in self.names.iter() {
                if !resources.contains_key(name) && !matches!(self.known.get(name), Some(None)) {
                    diff.removed.push(name.clone());
                }
            }
            for (name, version) in &self.known {
                if version.is_some() && !resources.contains_key(name) && !self.names.contains(name)
                {
                    diff.removed.push(name.clone());
                }
            }
        } else {
            for name in self.names.iter() {
                match resources.get(name) {
                    Some(resource) => consider(resource),
                    None => {
                        if !matches!(self.known.get(name), Some(None)) {
                            diff.removed.push(name.clone());
                        }
                    }
                }
            }
        }
        diff.removed.sort();
        diff
    }

    /// Every existing resource in scope: the body of a SotW response.
    pub(crate) fn in_scope(
        &self,
        resources: &BTreeMap<String, Arc<Resource>>,
    ) -> Vec<Arc<Resource>> {
        if self.wildcard {
            resources.values().cloned().collect()
        } else {
            self.names
                .iter()
                .filter_map(|name| resources.get(name).cloned())
                .collect()
        }
    }

    /// Records that the client was sent `diff`.
    pub(crate) fn commit(&mut self, diff: &Diff) {
        if !diff.is_empty() {
            self.revision += 1;
        }
        for resource in &diff.updated {
            self.known
                .insert(resource.name.clone(), Some(resource.version.clone()));
        }
        for name in &diff.removed {
            if self.names.contains(name) {
                self.known.insert(name.clone(), None);
            } else {
                self.known.remove(name);
            }
        }
    }

    /// Drops what the client has of names no longer in scope.
    fn prune(&mut self) {
        if self.wildcard {
            return;
        }
        let names = &self.names;
        let before = self.known.len();
        self.known.retain(|name, _| names.contains(name));
        if self.known.len() != before {
            self.revision += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ResourceType;

    fn resources(items: &[(&str, &str)]) -> BTreeMap<String, Arc<Resource>> {
        items
            .iter()
            .map(|(name, version)| {
                let mut resource = Resource::encode(
                    ResourceType::Cluster,
                    name,
                    &lookaside_proto::envoy::config::cluster::v3::Cluster::default(),
                );
                resource.version = version.to_string();
                (name.to_string(), Arc::new(resource))
            })
            .collect()
    }

    fn names(diff: &Diff) -> (Vec<String>, Vec<String>) {
        (
            diff.updated.iter().map(|r| r.name.clone()).collect(),
            diff.removed.clone(),
        )
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn legacy_wildcard_only_on_an_empty_first_request() {
        let mut sub = Subscription::default();
        let change = sub.replace(&[]);
        assert!(change.first && change.added);
        assert!(sub.is_wildcard());
        // An empty ACK keeps the legacy wildcard.
        assert_eq!(sub.replace(&[]), Change::default());
        assert!(sub.is_wildcard());

        let mut sub = Subscription::default();
        sub.replace(&list(&["a"]));
        assert!(!sub.is_wildcard());
        // A later empty list unsubscribes from everything.
        let change = sub.replace(&[]);
        assert!(change.removed && !change.added);
        assert!(!sub.is_wildcard());
        assert!(sub.names().is_empty());
    }

    #[test]
    fn explicit_names_end_legacy_wildcard_unless_star() {
        let mut sub = Subscription::default();
        sub.replace(&[]);
        sub.replace(&list(&["a"]));
        assert!(!sub.is_wildcard());
        sub.replace(&list(&["a", "*"]));
        assert!(sub.is_wildcard());
        assert!(sub.covers("zzz"));
    }

    #[test]
    fn diff_sends_new_and_changed_and_reports_missing_once() {
        let snapshot = resources(&[("a", "1"), ("b", "1")]);
        let mut sub = Subscription::default();
        sub.replace(&list(&["a", "c"]));
        let diff = sub.diff(&snapshot);
        assert_eq!(names(&diff), (list(&["a"]), list(&["c"])));
        sub.commit(&diff);
        assert!(sub.diff(&snapshot).is_empty());

        let changed = resources(&[("a", "2"), ("b", "2")]);
        assert_eq!(names(&sub.diff(&changed)), (list(&["a"]), vec![]));
    }

    #[test]
    fn wildcard_diff_reports_deletions() {
        let mut sub = Subscription::default();
        sub.replace(&[]);
        let diff = sub.diff(&resources(&[("a", "1"), ("b", "1")]));
        assert_eq!(diff.updated.len(), 2);
        sub.commit(&diff);
        let diff = sub.diff(&resources(&[("b", "1")]));
        assert_eq!(names(&diff), (vec![], list(&["a"])));
        sub.commit(&diff);
        assert!(sub.diff(&resources(&[("b", "1")])).is_empty());
    }

    #[test]
    fn unsubscribe_then_resubscribe_resends() {
        let snapshot = resources(&[("a", "1")]);
        let mut sub = Subscription::default();
        sub.replace(&list(&["a"]));
        let diff = sub.diff(&snapshot);
        sub.commit(&diff);
        sub.replace(&list(&["b"]));
        let change = sub.replace(&list(&["a", "b"]));
        assert!(change.added);
        assert_eq!(names(&sub.diff(&snapshot)).0, list(&["a"]));
    }

    #[test]
    fn delta_initial_versions_yield_updates_and_removals() {
        let snapshot = resources(&[("a", "1"), ("b", "2")]);
        let mut sub = Subscription::default();
        let initial: HashMap<String, String> = [("a", "1"), ("b", "1"), ("gone", "1")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        sub.start_delta(&[], &[], &initial);
        assert!(sub.is_wildcard());
        let diff = sub.diff(&snapshot);
        assert_eq!(names(&diff), (list(&["b"]), list(&["gone"])));
    }

    #[test]
    fn delta_first_request_unsubscribes_from_what_it_claims() {
        // Found by the xds_requests fuzz target: a first request claiming
        // `a`, subscribing to `*` and `a` and unsubscribing from `a`. The
        // claim was applied after the unsubscribe, so a client that forgot
        // `a` never got it back.
        let snapshot = resources(&[("a", "1")]);
        let initial: HashMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let mut sub = Subscription::default();
        sub.start_delta(&list(&["a", "*"]), &list(&["a"]), &initial);
        assert_eq!(names(&sub.diff(&snapshot)), (list(&["a"]), vec![]));
        // A claim for a name the request keeps is honoured.
        let mut sub = Subscription::default();
        sub.start_delta(&list(&["a"]), &[], &initial);
        assert!(sub.diff(&snapshot).is_empty());
    }

    #[test]
    fn delta_explicit_subscriptions() {
        let snapshot = resources(&[("a", "1")]);
        let mut sub = Subscription::default();
        sub.start_delta(&list(&["a", "missing"]), &[], &HashMap::new());
        let diff = sub.diff(&snapshot);
        assert_eq!(names(&diff), (list(&["a"]), list(&["missing"])));
        sub.commit(&diff);
        assert!(sub.diff(&snapshot).is_empty());
        let change = sub.update_delta(&[], &list(&["a"]));
        assert!(change.removed);
        assert!(
            sub.diff(&snapshot).is_empty(),
            "unsubscribed names are not reported as removed"
        );
        sub.update_delta(&list(&["a"]), &[]);
        assert_eq!(names(&sub.diff(&snapshot)).0, list(&["a"]));
    }

    #[test]
    fn delta_unsubscribing_a_name_the_wildcard_covers_resends_or_removes_it() {
        // Found by the xds_requests fuzz target: a wildcard client that
        // unsubscribed from a name it had, which was deleted meanwhile,
        // was never told of the deletion (Envoy keeps such a resource).
        let snapshot = resources(&[("a", "1")]);
        let mut sub = Subscription::default();
        let initial: HashMap<String, String> = [("a", "1"), ("gone", "1")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        sub.start_delta(&list(&["*", "a", "gone", "never"]), &[], &initial);
        sub.update_delta(&[], &list(&["a", "gone", "never"]));
        let diff = sub.diff(&snapshot);
        assert_eq!(names(&diff), (list(&["a"]), list(&["gone"])));
        sub.commit(&diff);
        assert!(sub.diff(&snapshot).is_empty());
    }

    #[test]
    fn a_forgotten_resource_that_is_gone_is_reported_removed() {
        // Found by the xds_requests fuzz target: a Listener update made the
        // stream forget the client's RouteConfigurations; the cluster was
        // deleted before they were re-sent, and a wildcard Delta client was
        // never told they were gone.
        let mut sub = Subscription::default();
        sub.start_delta(&[], &[], &HashMap::new());
        let diff = sub.diff(&resources(&[("a", "1")]));
        sub.commit(&diff);
        assert!(sub.forget("a"));
        let diff = sub.diff(&resources(&[]));
        assert_eq!(names(&diff), (vec![], list(&["a"])));
        sub.commit(&diff);
        assert!(sub.diff(&resources(&[])).is_empty());
    }

    #[test]
    fn forget_forces_a_resend() {
        let snapshot = resources(&[("a", "1")]);
        let mut sub = Subscription::default();
        sub.replace(&list(&["a"]));
        let diff = sub.diff(&snapshot);
        sub.commit(&diff);
        assert!(sub.forget("a"));
        assert_eq!(names(&sub.diff(&snapshot)).0, list(&["a"]));
    }
}

//! Which instances a pass reads, and which of them it verifies: an event
//! about one instance never sweeps the account.

use std::hash::{Hash, Hasher};

use super::connect;
use super::options::Page;
use crate::aws::{Aws, ReadError};
use crate::model::{
    Incomplete, Instance, Observed, Part, Snapshot, Unverified, key_uses, keys_of, role_name,
    same_key,
};
use crate::trigger::Scope;

/// The instances the scope may concern, before any of their reads.
pub(super) async fn candidates(aws: &Aws, scope: &Scope) -> Result<Vec<Instance>, ReadError> {
    match scope {
        Scope::Instance(id) => match connect::describe_instance(aws, id).await {
            Ok(instance) => Ok(vec![instance]),
            Err(ReadError::NotFound) => Ok(Vec::new()),
            Err(err) => Err(err),
        },
        Scope::Role(role) => {
            // IAM role names are case-insensitive: an event may spell it
            // differently from the instance's ServiceRole.
            let mut all = connect::list_instances(aws).await?;
            all.retain(|i| {
                i.service_role
                    .as_deref()
                    .is_some_and(|r| role_name(r).eq_ignore_ascii_case(&role.name))
            });
            Ok(all)
        }
        Scope::Domain(_) | Scope::Key(_) | Scope::Everything => connect::list_instances(aws).await,
    }
}

/// What could not be listed: the one instance an event named, or all.
pub(super) fn listing_failed(
    aws: &Aws,
    scope: &Scope,
    account: Option<&str>,
    reason: Unverified,
) -> Incomplete {
    let account = account.unwrap_or("*");
    let (instance_arn, what) = match scope {
        Scope::Instance(id) => (
            Some(format!(
                "arn:aws:connect:{}:{account}:instance/{id}",
                aws.region
            )),
            "Amazon Connect instance",
        ),
        _ => (None, "Amazon Connect instances"),
    };
    Incomplete {
        resource_arn: instance_arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:connect:{}:{account}:instance/*", aws.region)),
        instance_arn,
        what: what.to_owned(),
        reason,
    }
}

/// Keeps this part's instances: those after `page.after` (by id), at most
/// `page.limit`. `None` when the part is the whole sweep.
pub(super) fn page(instances: &mut Vec<Instance>, page: &Page) -> Option<Part> {
    let listed = instances.iter().map(|i| i.arn.clone()).collect();
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(after) = &page.after {
        instances.retain(|i| i.id.as_str() > after.as_str());
    }
    let rest = instances.split_off(page.limit.max(1).min(instances.len()));
    if page.after.is_none() && rest.is_empty() {
        return None;
    }
    Some(Part {
        listed,
        next_after: match (rest.is_empty(), instances.last()) {
            (false, Some(last)) => Some(last.id.clone()),
            _ => None,
        },
    })
}

/// Shuffles the read order by `seed`, stable for the same seed.
pub(super) fn shuffle(instances: &mut [Instance], seed: u64) {
    instances.sort_by_cached_key(|i| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (seed, &i.id).hash(&mut hasher);
        hasher.finish()
    });
}

/// Marks the instances this pass verifies; the others are context. A
/// targeted pass verifies every instance it cannot rule out: one whose
/// links could not be read may depend on the event's domain or key, and is
/// checked (and so reported `CHECK_INCOMPLETE`), never silently skipped.
pub(super) fn focus(instances: &mut [Instance], scope: &Scope, snapshot: &Snapshot) {
    for instance in instances.iter_mut() {
        instance.checked = match scope {
            Scope::Domain(name) => match &instance.domain {
                Observed::Found(linked) => linked.as_deref() == Some(name.as_str()),
                Observed::Absent => false,
                Observed::Unverified(_) => true,
            },
            Scope::Key(key) => {
                keys_of(snapshot, instance).is_none() || may_use_key(snapshot, instance, key)
            }
            Scope::Everything | Scope::Instance(_) | Scope::Role(_) => true,
        };
    }
}

fn may_use_key(snapshot: &Snapshot, instance: &Instance, key: &str) -> bool {
    let resolved = |r: &str| {
        snapshot
            .keys
            .get(r)
            .and_then(|k| k.found())
            .map(|k| k.arn.clone())
    };
    let target = resolved(key);
    key_uses(snapshot, instance)
        .into_iter()
        .any(|(reference, _)| {
            if same_key(reference, key) {
                return true;
            }
            match (resolved(reference), &target) {
                (Some(arn), Some(target)) => arn == *target,
                // Only an alias needs resolving to compare; one that could
                // not be resolved may name the key.
                _ => is_alias(reference) || is_alias(key),
            }
        })
}

fn is_alias(reference: &str) -> bool {
    reference.starts_with("alias/") || reference.contains(":alias/")
}

#[cfg(test)]
mod tests {
    use crate::model::same_key;

    #[test]
    fn a_key_or_alias_is_the_same_however_it_is_spelt() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let arn = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let alias_arn = "arn:aws:kms:eu-west-2:111122223333:alias/acme-connect";
        assert!(same_key(id, arn) && same_key(arn, id) && same_key(arn, arn));
        assert!(same_key("alias/acme-connect", alias_arn));
        assert!(!same_key("alias/acme-connect", arn));
        assert!(!same_key(id, "alias/1234abcd-12ab-34cd-56ef-1234567890ab"));
    }
}

//! Step 2 of a pass: the only code that reads AWS. Read-only, paginated,
//! scoped (an event about one instance never sweeps the account), with
//! bounded concurrency and a deadline. Returns a plain [`Snapshot`]; SDK
//! types stop at the adapters (`connect`, `profiles`, `iam`, `kms`).

mod connect;
mod iam;
mod kms;
mod options;
mod profiles;
mod scope;
mod streams;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{StreamExt, stream};

pub use connect::STORAGE_CALLS_PER_INSTANCE;
pub use options::{Options, Page, Progress};

use crate::aws::Aws;
use crate::model::{
    Instance, Observed, PROFILES_MANAGED_PREFIX, SlrDeletion, Snapshot, arn_account, key_uses,
    role_name,
};
use crate::trigger::{RoleRef, Scope};

/// Reads what `scope` needs into a snapshot, step by step.
pub async fn collect(aws: &Aws, scope: &Scope, opts: &Options) -> Snapshot {
    let mut snapshot = Snapshot {
        region: aws.region.clone(),
        account: opts.account.clone(),
        ..Snapshot::default()
    };
    if let Scope::Key(key) = scope {
        let owner = describe_event_key(aws, key, &mut snapshot, opts).await;
        if owner == KeyOwner::Aws || unused_by_index(key, &snapshot, opts) {
            return snapshot;
        }
    }
    let Some(mut instances) = select_instances(aws, scope, &mut snapshot, opts).await else {
        return snapshot;
    };
    let storage = StorageRead::for_scope(scope);
    read_links(aws, &mut instances, storage, opts).await;
    read_streams(aws, &instances, &mut snapshot, opts).await;
    read_domains(aws, scope, &instances, &mut snapshot, opts).await;
    describe_new_keys(aws, &mut snapshot, &instances, opts).await;
    scope::focus(&mut instances, scope, &snapshot);
    if storage == StorageRead::AfterFocus {
        read_storage_of_checked(aws, &mut instances, opts).await;
        read_streams(aws, &instances, &mut snapshot, opts).await;
        describe_new_keys(aws, &mut snapshot, &instances, opts).await;
    }
    if let Some(account) = instances.iter().find_map(|i| arn_account(&i.arn)) {
        snapshot.account = Some(account.to_owned());
    }
    snapshot.instances = instances;
    read_roles(aws, &mut snapshot, opts).await;
    read_deletion(aws, scope, &mut snapshot, opts).await;
    read_key_access(aws, &mut snapshot, opts).await;
    snapshot.connect_domains = connect_domains(aws, scope, &snapshot, opts).await;
    snapshot
}

#[derive(Debug, PartialEq, Eq)]
enum KeyOwner {
    Aws,
    CustomerOrUnknown,
}

/// Describes the key a KMS event names, under that name and its ARN.
/// AWS services create and retire grants on AWS managed keys all the time
/// and no rule applies to those keys: the caller stops there, sparing the
/// Connect quota a storage-config sweep.
async fn describe_event_key(
    aws: &Aws,
    key: &str,
    snapshot: &mut Snapshot,
    opts: &Options,
) -> KeyOwner {
    let found = opts.read(kms::describe_key(aws, key)).await;
    let owner = match found.found() {
        Some(k) if !k.customer_managed => KeyOwner::Aws,
        _ => KeyOwner::CustomerOrUnknown,
    };
    if let Observed::Found(described) = &found {
        snapshot.keys.insert(described.arn.clone(), found.clone());
    }
    snapshot.keys.insert(key.to_owned(), found);
    owner
}

/// Whether the ledger's complete key index says no instance uses the key,
/// by the event's name for it or the ARN it resolved to.
fn unused_by_index(key: &str, snapshot: &Snapshot, opts: &Options) -> bool {
    let Some(index) = opts.key_index.as_ref().filter(|i| i.complete) else {
        return false;
    };
    // A key that could not be described may be an alias the index knows
    // by its target: only a described (or confirmed gone) key is looked up.
    if matches!(snapshot.keys.get(key), Some(Observed::Unverified(_)) | None) {
        return false;
    }
    let resolved = snapshot
        .keys
        .get(key)
        .and_then(|k| k.found())
        .map(|k| k.arn.as_str());
    let names: Vec<&str> = [Some(key), resolved].into_iter().flatten().collect();
    !index.used(&names)
}

/// The scope's candidate instances, in read order; `None` (with the
/// failure recorded in the snapshot) when they could not be listed.
async fn select_instances(
    aws: &Aws,
    scope: &Scope,
    snapshot: &mut Snapshot,
    opts: &Options,
) -> Option<Vec<Instance>> {
    let mut instances = match opts.read(scope::candidates(aws, scope)).await {
        Observed::Found(instances) => instances,
        Observed::Absent => Vec::new(),
        Observed::Unverified(reason) => {
            let failed = scope::listing_failed(aws, scope, opts.account.as_deref(), reason);
            snapshot.incomplete.push(failed);
            return None;
        }
    };
    match (&opts.page, scope) {
        (Some(page), Scope::Everything) => {
            snapshot.part = scope::page(&mut instances, page);
        }
        _ => {
            if let Some(seed) = opts.order_seed {
                scope::shuffle(&mut instances, seed);
            }
        }
    }
    Some(instances)
}

/// When an instance's storage configs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageRead {
    /// With its domain link, for every active instance.
    WithLinks,
    /// Once the pass knows which instances it checks: a domain event names
    /// its instances only through their links.
    AfterFocus,
}

impl StorageRead {
    fn for_scope(scope: &Scope) -> Self {
        match scope {
            Scope::Domain(_) => StorageRead::AfterFocus,
            _ => StorageRead::WithLinks,
        }
    }
}

/// Reads each active instance's domain link (and its storage configs
/// with [`StorageRead::WithLinks`]), a bounded number of instances at a time.
async fn read_links(aws: &Aws, instances: &mut [Instance], storage: StorageRead, opts: &Options) {
    let total = instances.iter().filter(|i| i.is_active()).count();
    let done = &AtomicUsize::new(0);
    let reads = stream::iter(instances.iter_mut().filter(|i| i.is_active()))
        .map(|instance| async move {
            instance.domain = opts
                .read(profiles::domain_of_instance(aws, &instance.arn))
                .await
                .or_found(None);
            if storage == StorageRead::WithLinks {
                read_storage(aws, instance, opts).await;
            }
            if let Some(Progress(report)) = &opts.progress {
                report(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            }
        })
        .buffer_unordered(opts.width());
    reads.collect::<()>().await;
}

async fn read_storage_of_checked(aws: &Aws, instances: &mut [Instance], opts: &Options) {
    let reads = stream::iter(instances.iter_mut().filter(|i| i.checked && i.is_active()))
        .map(|instance| read_storage(aws, instance, opts))
        .buffer_unordered(opts.width());
    reads.collect::<()>().await;
}

async fn read_storage(aws: &Aws, instance: &mut Instance, opts: &Options) {
    instance.storage = opts
        .read(connect::storage_configs(aws, &instance.id))
        .await
        .or_found(Vec::new());
}

/// How the Kinesis and Firehose streams the instances' storage configs
/// write to are encrypted, each stream once.
async fn read_streams(aws: &Aws, instances: &[Instance], snapshot: &mut Snapshot, opts: &Options) {
    let configs = || instances.iter().filter_map(|i| i.storage.found()).flatten();
    let new = |arn: &&String| !snapshot.streams.contains_key(*arn);
    let kinesis: BTreeSet<String> = configs()
        .filter_map(|c| c.stream_arn.as_ref())
        .filter(new)
        .cloned()
        .collect();
    let firehose: BTreeSet<String> = configs()
        .filter_map(|c| c.firehose_arn.as_ref())
        .filter(new)
        .cloned()
        .collect();
    let kinesis = opts
        .read_all(kinesis, |arn| async move {
            streams::kinesis_stream(aws, &arn).await
        })
        .await;
    let firehose = opts
        .read_all(firehose, |arn| async move {
            streams::firehose_stream(aws, &arn).await
        })
        .await;
    snapshot.streams.extend(kinesis);
    snapshot.streams.extend(firehose);
}

/// The domains the instances link to, and the one a domain event names.
async fn read_domains(
    aws: &Aws,
    scope: &Scope,
    instances: &[Instance],
    snapshot: &mut Snapshot,
    opts: &Options,
) {
    let mut names: BTreeSet<String> = instances
        .iter()
        .filter_map(|i| i.domain.found().cloned().flatten())
        .collect();
    if let Scope::Domain(name) = scope {
        names.insert(name.clone());
    }
    snapshot.domains = opts
        .read_all(names, |name| async move {
            profiles::get_domain(aws, &name).await
        })
        .await;
}

/// Describes the keys the instances use that the snapshot does not hold yet.
async fn describe_new_keys(
    aws: &Aws,
    snapshot: &mut Snapshot,
    instances: &[Instance],
    opts: &Options,
) {
    let new_refs = instances
        .iter()
        .flat_map(|i| key_uses(snapshot, i))
        .map(|(key, _)| key.to_owned())
        .filter(|k| !snapshot.keys.contains_key(k))
        .collect();
    let keys = opts
        .read_all(
            new_refs,
            |key| async move { kms::describe_key(aws, &key).await },
        )
        .await;
    snapshot.keys.extend(keys);
}

/// The service roles of the active instances the pass checks, each once.
async fn read_roles(aws: &Aws, snapshot: &mut Snapshot, opts: &Options) {
    let role_arns = snapshot
        .instances
        .iter()
        .filter(|i| i.checked && i.is_active())
        .filter_map(|i| i.service_role.clone())
        .collect();
    snapshot.roles = opts
        .read_all(role_arns, |arn| async move {
            iam::read_role(aws, role_name(&arn)).await
        })
        .await;
}

/// The deletion task a `DeleteServiceLinkedRole` event started: until it
/// ends, reading the role proves nothing.
async fn read_deletion(aws: &Aws, scope: &Scope, snapshot: &mut Snapshot, opts: &Options) {
    let Scope::Role(RoleRef {
        name,
        deletion_task: Some(task_id),
    }) = scope
    else {
        return;
    };
    let status = opts.read(iam::deletion_status(aws, task_id)).await;
    snapshot.slr_deletions.push(SlrDeletion {
        role_name: name.clone(),
        task_id: task_id.clone(),
        status,
    });
}

/// Grants and key policies of the usable customer managed keys that
/// checked instances use. A key policy is read only in the instances' own
/// account: GetKeyPolicy does not work across accounts.
async fn read_key_access(aws: &Aws, snapshot: &mut Snapshot, opts: &Options) {
    let used: BTreeSet<String> = snapshot
        .instances
        .iter()
        .filter(|i| i.checked && i.is_active())
        .flat_map(|i| key_uses(snapshot, i))
        .filter_map(|(reference, _)| snapshot.keys.get(reference)?.found())
        .filter(|k| k.customer_managed && k.is_usable())
        .map(|k| k.arn.clone())
        .collect();
    let own: BTreeSet<String> = used
        .iter()
        .filter(|arn| arn_account(arn).is_some() && arn_account(arn) == snapshot.account.as_deref())
        .cloned()
        .collect();
    let grants = opts
        .read_all(used, |arn| async move { kms::list_grants(aws, &arn).await })
        .await;
    let policies = opts
        .read_all(own, |arn| async move { kms::key_policy(aws, &arn).await })
        .await;
    for key in snapshot.keys.values_mut() {
        if let Observed::Found(key) = key {
            key.grants = grants.get(&key.arn).cloned();
            key.policy = policies.get(&key.arn).cloned();
        }
    }
}

/// The `amazon-connect-*` domains to judge for cross-domain exposure: all
/// of them in a sweep, the event's own in a domain pass.
async fn connect_domains(
    aws: &Aws,
    scope: &Scope,
    snapshot: &Snapshot,
    opts: &Options,
) -> Observed<Vec<String>> {
    match scope {
        Scope::Everything => opts
            .read(profiles::list_domains(aws))
            .await
            .map_found(|names| {
                names
                    .into_iter()
                    .filter(|n| n.starts_with(PROFILES_MANAGED_PREFIX))
                    .collect()
            }),
        Scope::Domain(name)
            if name.starts_with(PROFILES_MANAGED_PREFIX)
                && matches!(snapshot.domains.get(name), Some(Observed::Found(_))) =>
        {
            Observed::Found(vec![name.clone()])
        }
        _ => Observed::Found(Vec::new()),
    }
}

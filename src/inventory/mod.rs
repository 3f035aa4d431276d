//! Step 2 of a pass: the only code that reads AWS. Read-only, paginated,
//! scoped (an event about one instance never sweeps the account), with
//! bounded concurrency. Returns a plain [`Snapshot`]; SDK types stop here.

mod connect;
mod iam;
mod kms;
mod pace;
mod profiles;
mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::time::Instant;

pub use connect::STORAGE_TYPES;
pub use pace::Pace;
pub use read::ReadError;

use crate::model::{DEADLINE_REASON, Incomplete, Instance, Observed, Snapshot, arn_account};
use crate::rules::PROFILES_MANAGED_PREFIX;
use crate::trigger::Scope;

/// The AWS clients of one process, built once at start-up.
#[derive(Debug, Clone)]
pub struct Aws {
    pub connect: aws_sdk_connect::Client,
    pub profiles: aws_sdk_customerprofiles::Client,
    pub iam: aws_sdk_iam::Client,
    pub kms: aws_sdk_kms::Client,
    pub sns: aws_sdk_sns::Client,
    pub connect_pace: std::sync::Arc<Pace>,
    pub region: String,
}

impl Aws {
    pub fn new(config: &aws_config::SdkConfig, connect_pace: Pace) -> Self {
        Aws {
            connect: aws_sdk_connect::Client::new(config),
            profiles: aws_sdk_customerprofiles::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            connect_pace: std::sync::Arc::new(connect_pace),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

/// How hard and how long a pass may read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Instances read at the same time.
    pub concurrency: usize,
    /// No new instance is started after this; what is left is reported
    /// as `CHECK_INCOMPLETE`.
    pub deadline: Option<Instant>,
    /// The account the trigger came from, to name what could not be read
    /// before any ARN was seen.
    pub account: Option<String>,
    /// Told (instances read, of total) as a sweep goes.
    pub progress: Option<Progress>,
    /// Reads instances in an order shuffled by this seed. A sweep too large
    /// for one invocation's deadline then reaches different instances each
    /// time (the Lambda seeds it with the hour), instead of never reaching
    /// the same tail. `None` keeps the API's order.
    pub order_seed: Option<u64>,
}

/// A callback for long sweeps: `(instances read, instances in total)`.
#[derive(Clone)]
pub struct Progress(pub std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 4,
            deadline: None,
            account: None,
            progress: None,
            order_seed: None,
        }
    }
}

impl Options {
    /// Runs one read unless the deadline has passed, and cuts it off when
    /// the deadline comes, so a slow read cannot eat the time left to alert.
    async fn read<T>(&self, read: impl Future<Output = Result<T, ReadError>>) -> Observed<T> {
        let Some(deadline) = self.deadline else {
            return observed(read.await);
        };
        if Instant::now() >= deadline {
            return Observed::Unverified(DEADLINE_REASON.to_owned());
        }
        match tokio::time::timeout_at(deadline, read).await {
            Ok(result) => observed(result),
            Err(_) => Observed::Unverified(DEADLINE_REASON.to_owned()),
        }
    }
}

/// Reads what `scope` needs into a snapshot.
pub async fn collect(aws: &Aws, scope: &Scope, opts: &Options) -> Snapshot {
    let mut snapshot = Snapshot {
        region: aws.region.clone(),
        ..Snapshot::default()
    };
    if let Scope::Key(key) = scope
        && describe_event_key(aws, key, &mut snapshot, opts).await == KeyOwner::Aws
    {
        snapshot.account = opts.account.clone();
        return snapshot;
    }
    let mut instances = match opts.read(select_instances(aws, scope)).await {
        Observed::Found(instances) => instances,
        Observed::Absent => Vec::new(),
        Observed::Unverified(reason) => {
            snapshot
                .incomplete
                .push(listing_failed(aws, scope, opts, reason));
            snapshot.account = opts.account.clone();
            return snapshot;
        }
    };
    if let Some(seed) = opts.order_seed {
        instances.sort_by_cached_key(|i| shuffle_key(seed, &i.id));
    }
    // A domain event names its instances only through their links, so it
    // reads storage after it knows which instances to check.
    let storage_first = !matches!(scope, Scope::Domain(_));
    read_links(aws, &mut instances, storage_first, opts).await;
    let mut domain_names: BTreeSet<String> = linked_domains(&instances);
    if let Scope::Domain(name) = scope {
        domain_names.insert(name.clone());
    }
    snapshot.domains = read_all(domain_names, opts, |name| async move {
        profiles::get_domain(aws, &name).await
    })
    .await;
    describe_new_keys(aws, &mut snapshot, &instances, opts).await;
    focus(&mut instances, scope, &snapshot);
    if !storage_first {
        read_storage_of_checked(aws, &mut instances, opts).await;
        describe_new_keys(aws, &mut snapshot, &instances, opts).await;
    }
    snapshot.account = instances
        .iter()
        .find_map(|i| arn_account(&i.arn))
        .map(str::to_owned)
        .or_else(|| opts.account.clone());
    snapshot.instances = instances;
    let role_arns = snapshot
        .instances
        .iter()
        .filter(|i| i.checked && i.is_active())
        .filter_map(|i| i.service_role.clone())
        .collect();
    snapshot.roles = read_all(role_arns, opts, |arn| async move {
        iam::read_role(aws, crate::rules::role_name(&arn)).await
    })
    .await;
    read_grants(aws, &mut snapshot, opts).await;
    snapshot.connect_domains = connect_domains(aws, scope, &snapshot).await;
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

/// Describes the keys the instances use that the snapshot does not hold yet.
async fn describe_new_keys(
    aws: &Aws,
    snapshot: &mut Snapshot,
    instances: &[Instance],
    opts: &Options,
) {
    let new_refs = key_references(snapshot, instances)
        .into_iter()
        .filter(|k| !snapshot.keys.contains_key(k))
        .collect();
    let keys = read_all(new_refs, opts, |key| async move {
        kms::describe_key(aws, &key).await
    })
    .await;
    snapshot.keys.extend(keys);
}

fn shuffle_key(seed: u64, id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (seed, id).hash(&mut hasher);
    hasher.finish()
}

/// What could not be listed: the one instance an event named, or all.
fn listing_failed(aws: &Aws, scope: &Scope, opts: &Options, reason: String) -> Incomplete {
    let account = opts.account.as_deref().unwrap_or("*");
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

async fn select_instances(aws: &Aws, scope: &Scope) -> Result<Vec<Instance>, ReadError> {
    match scope {
        Scope::Instance(id) => match connect::describe_instance(aws, id).await {
            Ok(instance) => Ok(vec![instance]),
            Err(ReadError::NotFound) => Ok(Vec::new()),
            Err(err) => Err(err),
        },
        Scope::Role(name) => {
            let suffix = format!("/{name}");
            let mut all = connect::list_instances(aws).await?;
            all.retain(|i| {
                i.service_role
                    .as_deref()
                    .is_some_and(|r| r.ends_with(&suffix))
            });
            Ok(all)
        }
        Scope::Domain(_) | Scope::Key(_) | Scope::Everything => connect::list_instances(aws).await,
    }
}

/// Reads each active instance's domain link (and storage configs when
/// `with_storage`), a bounded number of instances at a time.
async fn read_links(aws: &Aws, instances: &mut [Instance], with_storage: bool, opts: &Options) {
    let total = instances.iter().filter(|i| i.is_active()).count();
    let done = &std::sync::atomic::AtomicUsize::new(0);
    let reads = stream::iter(instances.iter_mut().filter(|i| i.is_active()))
        .map(|instance| async move {
            instance.domain = opts
                .read(profiles::domain_of_instance(aws, &instance.arn))
                .await
                .or_found(None);
            if with_storage {
                read_storage(aws, instance, opts).await;
            }
            if let Some(Progress(report)) = &opts.progress {
                report(
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    total,
                );
            }
        })
        .buffer_unordered(opts.concurrency.max(1));
    reads.collect::<()>().await;
}

async fn read_storage_of_checked(aws: &Aws, instances: &mut [Instance], opts: &Options) {
    let reads = stream::iter(instances.iter_mut().filter(|i| i.checked && i.is_active()))
        .map(|instance| read_storage(aws, instance, opts))
        .buffer_unordered(opts.concurrency.max(1));
    reads.collect::<()>().await;
}

async fn read_storage(aws: &Aws, instance: &mut Instance, opts: &Options) {
    instance.storage = opts
        .read(connect::storage_configs(aws, &instance.id))
        .await
        .or_found(Vec::new());
}

/// Reads every item once, bounded, into a map keyed by the item.
async fn read_all<T, F, Fut>(
    items: BTreeSet<String>,
    opts: &Options,
    read: F,
) -> BTreeMap<String, Observed<T>>
where
    F: Fn(String) -> Fut + Copy,
    Fut: Future<Output = Result<T, ReadError>>,
{
    stream::iter(items)
        .map(|item| async move {
            let value = opts.read(read(item.clone())).await;
            (item, value)
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await
}

fn observed<T>(result: Result<T, ReadError>) -> Observed<T> {
    match result {
        Ok(value) => Observed::Found(value),
        Err(ReadError::NotFound) => Observed::Absent,
        Err(ReadError::Failed(reason)) => Observed::Unverified(reason),
    }
}

fn linked_domains(instances: &[Instance]) -> BTreeSet<String> {
    instances
        .iter()
        .filter_map(|i| i.domain.found().cloned().flatten())
        .collect()
}

fn key_references(snapshot: &Snapshot, instances: &[Instance]) -> BTreeSet<String> {
    instances
        .iter()
        .flat_map(|i| crate::rules::key_uses(snapshot, i))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// Marks the instances this pass verifies; the others are context.
fn focus(instances: &mut [Instance], scope: &Scope, snapshot: &Snapshot) {
    for instance in instances.iter_mut() {
        instance.checked = match scope {
            Scope::Domain(name) => instance.domain.found() == Some(&Some(name.clone())),
            Scope::Key(key) => depends_on_key(snapshot, instance, key),
            Scope::Everything | Scope::Instance(_) | Scope::Role(_) => true,
        };
    }
}

fn depends_on_key(snapshot: &Snapshot, instance: &Instance, key: &str) -> bool {
    let resolved = |r: &str| {
        snapshot
            .keys
            .get(r)
            .and_then(|k| k.found())
            .map(|k| k.arn.clone())
    };
    let target = resolved(key);
    crate::rules::key_uses(snapshot, instance)
        .into_iter()
        .any(|(reference, _)| {
            same_key(reference, key) || (target.is_some() && resolved(reference) == target)
        })
}

/// A key id and the ARN that ends in it name the same key.
fn same_key(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!(":key/{b}")) || b.ends_with(&format!(":key/{a}"))
}

/// Grants of the enabled customer managed keys that checked instances use.
async fn read_grants(aws: &Aws, snapshot: &mut Snapshot, opts: &Options) {
    let used: BTreeSet<String> = snapshot
        .instances
        .iter()
        .filter(|i| i.checked && i.is_active())
        .flat_map(|i| crate::rules::key_uses(snapshot, i))
        .filter_map(|(reference, _)| snapshot.keys.get(reference)?.found())
        .filter(|k| k.customer_managed && k.is_usable())
        .map(|k| k.arn.clone())
        .collect();
    let grants = read_all(used, opts, |arn| async move {
        kms::list_grants(aws, &arn).await
    })
    .await;
    for key in snapshot.keys.values_mut() {
        if let Observed::Found(key) = key
            && let Some(found) = grants.get(&key.arn)
        {
            key.grants = Some(found.clone());
        }
    }
}

async fn connect_domains(aws: &Aws, scope: &Scope, snapshot: &Snapshot) -> Observed<Vec<String>> {
    match scope {
        Scope::Everything => observed(profiles::list_domains(aws).await).map_found(|names| {
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

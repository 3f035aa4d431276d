//! The clients a pass reads with: the guard's own, or, in central mode,
//! a member account's through `MEMBER_ROLE_NAME`. Member credentials come
//! from aws-config's `AssumeRoleProvider`, one per account, shared by every
//! Region of it, so the SDK's identity cache keeps them until shortly
//! before they expire. Each account and Region gets its own Connect pace.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use aws_config::Region;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::{Aws, ConnectPace, ConnectRates};
use crate::config::CONNECT_API_BURST;
pub use crate::model::Place;
use crate::model::region_partition;

/// The clients for one place: the guard's own, or a member's.
pub enum Reads<'a> {
    Own(&'a Aws),
    Member(Arc<Aws>),
}

impl Deref for Reads<'_> {
    type Target = Aws;

    fn deref(&self) -> &Aws {
        match self {
            Reads::Own(aws) => aws,
            Reads::Member(aws) => aws,
        }
    }
}

/// Clients for other places, built on first use and kept for the process.
pub struct Fleet {
    /// `MEMBER_ROLE_NAME`: without it, every place is read with the guard's
    /// own credentials.
    role_name: Option<String>,
    external_id: Option<String>,
    rates: ConnectRates,
    credentials: Mutex<HashMap<String, SharedCredentialsProvider>>,
    clients: Mutex<HashMap<Place, Arc<Aws>>>,
}

impl Fleet {
    pub fn new(role_name: Option<&str>, external_id: Option<&str>, rates: &ConnectRates) -> Fleet {
        Fleet {
            role_name: role_name.map(str::to_owned),
            external_id: external_id.map(str::to_owned),
            rates: *rates,
            credentials: Mutex::default(),
            clients: Mutex::default(),
        }
    }

    /// The role the guard assumes in `account`, in central mode.
    pub fn role_arn(&self, own: &Aws, account: &str) -> Option<String> {
        let partition = region_partition(&own.region);
        let role = self.role_name.as_ref()?;
        Some(format!("arn:{partition}:iam::{account}:role/{role}"))
    }

    /// The clients for `place`, built from the guard's own (`own`): through
    /// the member role when `assume`, else with the guard's credentials.
    pub async fn clients(&self, own: &Aws, place: &Place, assume: bool) -> Arc<Aws> {
        if let Some(aws) = self.clients.lock().expect("not poisoned").get(place) {
            return Arc::clone(aws);
        }
        let mut config = own.config.to_builder();
        if assume && let Some(role_arn) = self.role_arn(own, &place.account) {
            config.set_credentials_provider(Some(
                self.credentials(own, &place.account, role_arn).await,
            ));
        }
        let config = config.region(Region::new(place.region.clone())).build();
        let pace = ConnectPace::new(&self.rates, CONNECT_API_BURST);
        let aws = Arc::new(Aws::counted(&config, pace, Arc::clone(&own.calls)));
        self.clients
            .lock()
            .expect("not poisoned")
            .insert(place.clone(), Arc::clone(&aws));
        aws
    }

    async fn credentials(
        &self,
        own: &Aws,
        account: &str,
        role_arn: String,
    ) -> SharedCredentialsProvider {
        if let Some(provider) = self.credentials.lock().expect("not poisoned").get(account) {
            return provider.clone();
        }
        let mut builder = AssumeRoleProvider::builder(role_arn)
            .session_name("connect-slr-guard")
            .configure(&own.config);
        if let Some(id) = &self.external_id {
            builder = builder.external_id(id.clone());
        }
        let provider = SharedCredentialsProvider::new(builder.build().await);
        self.credentials
            .lock()
            .expect("not poisoned")
            .insert(account.to_owned(), provider.clone());
        provider
    }
}

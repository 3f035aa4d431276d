//! Customer Profiles reads: the domain linked to an instance, a domain's
//! encryption key, and the account's domains. These operations have no SDK
//! paginator, so the loops follow `NextToken` themselves.

use crate::aws::{Aws, ReadError};
use crate::model::Domain;

/// The domain whose integration `Uri` is the instance ARN, if any.
#[tracing::instrument(skip(aws))]
pub async fn domain_of_instance(
    aws: &Aws,
    instance_arn: &str,
) -> Result<Option<String>, ReadError> {
    let mut next_token = None;
    loop {
        let page = aws
            .profiles
            .list_account_integrations()
            .uri(instance_arn)
            .set_next_token(next_token)
            .send()
            .await?;
        if let Some(item) = page.items().iter().find(|i| i.uri() == instance_arn) {
            return Ok(Some(item.domain_name().to_owned()));
        }
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(None);
        }
    }
}

#[tracing::instrument(skip(aws))]
pub async fn get_domain(aws: &Aws, name: &str) -> Result<Domain, ReadError> {
    let output = aws.profiles.get_domain().domain_name(name).send().await?;
    Ok(Domain {
        name: output.domain_name().to_owned(),
        encryption_key: output
            .default_encryption_key()
            .filter(|k| !k.is_empty())
            .map(str::to_owned),
    })
}

/// Names of every domain in the account and Region.
#[tracing::instrument(skip(aws))]
pub async fn list_domains(aws: &Aws) -> Result<Vec<String>, ReadError> {
    let mut names = Vec::new();
    let mut next_token = None;
    loop {
        let page = aws
            .profiles
            .list_domains()
            .set_next_token(next_token)
            .send()
            .await?;
        names.extend(page.items().iter().map(|d| d.domain_name().to_owned()));
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(names);
        }
    }
}

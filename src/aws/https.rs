//! The one HTTPS client of the process, shared by every SDK client and the
//! credential providers. It is the client the SDK builds by default (rustls
//! on aws-lc, the platform's CA roots, proxy settings from the environment),
//! with one difference: nothing is built, and no root certificate is read,
//! until the first request. The SDK's own client builds its connector in
//! `validate_base_client_config`, at every `Client::new`, which puts reading
//! and parsing the roots into the Lambda's Init.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;

/// The SDK's default client, built on first use.
pub fn lazy_https_client() -> SharedHttpClient {
    OnFirstRequest(sdk_default_client()).into_shared()
}

#[derive(Debug)]
struct OnFirstRequest(SharedHttpClient);

impl HttpClient for OnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The inner client builds a connector per settings once and caches it.
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// What `aws-smithy-runtime` builds for `default-https-client` at behaviour
/// version 2025-08-07 and later (`default_https_client`, which is private).
fn sdk_default_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

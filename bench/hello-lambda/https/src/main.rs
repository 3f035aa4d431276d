//! The TLS floor: hello world on the Lambda Runtime API (echoes the event
//! back, as `../src/main.rs` does), except that with `HELLO_HTTPS_URL` set the
//! first invocation instead makes one HTTPS GET
//! to that URL through the connector the AWS SDK builds by default
//! (aws-smithy-runtime's `default_https_client`: `ConnectorBuilder` with
//! `tls::Provider::Rustls(CryptoMode::AwsLc)`, proxy settings from the
//! environment): the same crates and the same root loading
//! (rustls-native-certs) as the guard, and nothing else. The connector is
//! built inside that first invocation, so Init stays the plain floor and the
//! whole TLS cost (roots, handshake, entropy) lands in the first call.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_smithy_http_client::{ConnectorBuilder, proxy::ProxyConfig, tls};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

static FIRST: AtomicBool = AtomicBool::new(true);

async fn https_get(url: &str) -> Result<Value, Error> {
    let mut builder = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    builder.set_proxy_config(Some(ProxyConfig::from_env()));
    let connector = builder.build();
    let response = (connector.call(HttpRequest::get(url)?).await)
        .map_err(|err| format!("GET {url}: {}", DisplayErrorContext(&err)))?;
    let status = response.status().as_u16();
    let body = ByteStream::new(response.into_body())
        .collect()
        .await?
        .into_bytes();
    if !(200..300).contains(&status) {
        return Err(format!("GET {url}: HTTP {status}").into());
    }
    Ok(json!({"https_status": status, "https_bytes": body.len()}))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let url = std::env::var("HELLO_HTTPS_URL").ok();
    let url = url.as_deref();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        match url {
            Some(url) if FIRST.swap(false, Ordering::Relaxed) => https_get(url).await,
            _ => Ok::<Value, Error>(event.payload),
        }
    }))
    .await
}

//! How the CLI reaches a running server: URL, key and optional TLS material, shared by
//! `chat` and `admin` so there is one HTTP client setup.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use highside_identity::ApiKeySecret;

/// Connection flags.
#[derive(Args, Clone)]
pub struct Connection {
    /// The server's base URL.
    #[arg(
        long,
        env = "HIGHSIDE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The API key (printed by `highside init` or `highside admin keys create`).
    #[arg(long, env = "HIGHSIDE_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// PEM CA certificate to trust for an https:// server.
    #[arg(long, env = "HIGHSIDE_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --client-key).
    #[arg(
        long,
        env = "HIGHSIDE_CLIENT_CERT",
        global = true,
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(
        long,
        env = "HIGHSIDE_CLIENT_KEY",
        global = true,
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
}

impl Connection {
    /// The key, redacted in every Debug and Display.
    fn key(&self) -> Option<ApiKeySecret> {
        self.api_key.clone().map(ApiKeySecret::from_client)
    }

    /// An HTTP client with the TLS material.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder();
        if let Some(ca) = &self.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let mut pem =
                std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
            pem.extend(
                std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
            );
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(b.build()?)
    }

    /// A request to `path` with the credentials attached.
    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let req = client.request(method, url);
        match self.key() {
            Some(k) => req.bearer_auth(k.expose()),
            None => req,
        }
    }
}

/// Fails with the API's error message when the answer is not a success.
pub async fn check(res: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    bail!("{status}: {message}")
}

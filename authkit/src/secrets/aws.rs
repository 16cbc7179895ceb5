//! AWS Secrets Manager.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata as _, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_smithy_http_client::tls;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{SecretError, SecretProvider, SecretValue};

/// Settings of [`AwsSecrets`].
#[derive(Debug, Clone)]
pub struct AwsSecretsConfig {
    /// The region; `None` takes it from the standard chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// A custom endpoint (a VPC endpoint, LocalStack, moto); `None` uses AWS's.
    pub endpoint_url: Option<String>,
    /// Secret `name` is read from the secret id `<prefix><name>` (default `authkit/`).
    pub prefix: String,
    /// Time limit of one attempt (default 5 s).
    pub timeout: Duration,
    /// Attempts per read, the first included (default 3).
    pub max_attempts: u32,
}

impl Default for AwsSecretsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            prefix: "authkit/".into(),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

/// Error codes of AWS that mean "these credentials may not read this secret" (or are not
/// valid credentials at all), as opposed to "the service could not answer".
const DENIED_CODES: [&str; 10] = [
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "ExpiredToken",
];

/// Reads secret `name` from AWS Secrets Manager, secret id `<prefix><name>` (default
/// `authkit/<name>`), the `AWSCURRENT` version. The version label is the secret version's
/// `VersionId`.
///
/// * **Credentials** come from the standard AWS chain: environment variables
///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), profile files with
///   static keys, web identity (EKS IRSA), the container credentials endpoint (ECS task
///   roles, EKS Pod Identity) and EC2 instance metadata (IMDS). SSO profiles and `credential_process` are **not**
///   supported: authkit builds the SDK without those default features.
/// * **Permission:** the role needs `secretsmanager:GetSecretValue` on
///   `arn:aws:secretsmanager:<region>:<account>:secret:<prefix>*` (plus `kms:Decrypt` on the
///   secrets' KMS key if it is a customer managed key).
/// * **Rotation:** a rotation in AWS creates a new `AWSCURRENT` version; each
///   [`get`](SecretProvider::get) reads the current version, so the caller's periodic refresh
///   picks it up, and the changed `VersionId` tells it the value changed.
/// * **Errors:** a missing secret (or one without an `AWSCURRENT` value) is
///   [`SecretError::NotFound`]; refused or invalid credentials are [`SecretError::Denied`];
///   anything else (network, timeouts, throttling, KMS failures) is
///   [`SecretError::Unavailable`]. AWS error messages name the secret id, never the value.
///
/// The HTTP client is hyper with rustls on ring (no aws-lc, no OpenSSL) and the system's trust
/// store. `Debug` shows the region, the endpoint and the prefix only.
#[derive(Clone)]
pub struct AwsSecrets {
    client: aws_sdk_secretsmanager::Client,
    region: Option<String>,
    endpoint_url: Option<String>,
    prefix: String,
}

impl AwsSecrets {
    /// Builds the client. No request is sent until the first [`get`](SecretProvider::get),
    /// which is where unreachable endpoints and bad credentials show up.
    ///
    /// When `config.region` is `None`, the region is resolved now from the standard chain
    /// (`AWS_REGION`, the profile, and on EC2 the instance metadata service); set it to avoid
    /// that look-up. Without any region, reads fail as [`SecretError::Unavailable`].
    ///
    /// `config.timeout` bounds the connection set-up and each attempt; `config.max_attempts`
    /// of `0` counts as `1`. Retries use the SDK's standard mode (exponential backoff with
    /// jitter, transient errors and throttling only).
    pub async fn connect(config: AwsSecretsConfig) -> Result<Self, SecretError> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)));
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.as_ref().to_owned());
        let endpoint_url = sdk.endpoint_url().map(str::to_owned);
        Ok(Self {
            client: aws_sdk_secretsmanager::Client::new(&sdk),
            region,
            endpoint_url,
            prefix: config.prefix,
        })
    }

    /// The Secrets Manager secret id that holds secret `name`: `<prefix><name>`.
    pub fn secret_id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The region requests go to (configured, or found by the standard chain).
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    fn unavailable(&self, name: &str, message: String) -> SecretError {
        SecretError::Unavailable {
            name: name.to_owned(),
            provider: "aws",
            source: Box::new(AwsError(message)),
        }
    }

    /// Maps a failed `GetSecretValue` to a [`SecretError`].
    ///
    /// Only what cannot hold the value is rendered: the service error (code, message, request
    /// id) or the transport failure. `DisplayErrorContext` of the whole `SdkError` would also
    /// print the raw HTTP response, body bytes included; for a response that failed to parse,
    /// that body may be a successful answer carrying the secret, so it is never rendered.
    fn map_error<R: fmt::Debug>(
        &self,
        name: &str,
        err: SdkError<GetSecretValueError, R>,
    ) -> SecretError {
        let detail = match &err {
            SdkError::ServiceError(context) => {
                let service = context.err();
                if service.is_resource_not_found_exception() {
                    return SecretError::NotFound {
                        name: name.to_owned(),
                        provider: "aws",
                    };
                }
                let detail = DisplayErrorContext(service).to_string();
                if service
                    .code()
                    .is_some_and(|code| DENIED_CODES.contains(&code))
                {
                    tracing::debug!(
                        secret = name,
                        error = %detail,
                        "AWS Secrets Manager refused access"
                    );
                    return SecretError::Denied {
                        name: name.to_owned(),
                        provider: "aws",
                    };
                }
                format!("service error: {detail}")
            }
            // No response was received: nothing in these can come from the secret.
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ConstructionFailure(_) => DisplayErrorContext(&err).to_string(),
            // `ResponseError` (an unparsable response) and any future kind.
            _ => "the response could not be read (details withheld: the response body may \
                  hold the secret value)"
                .to_owned(),
        };
        self.unavailable(
            name,
            format!(
                "GetSecretValue of `{}` failed: {detail}",
                self.secret_id(name)
            ),
        )
    }
}

impl fmt::Debug for AwsSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecrets")
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_userinfo),
            )
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `endpoint` without a user name or password, should one have been put in the URL.
fn redact_userinfo(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => endpoint.to_owned(),
        Err(_) => "[unparsable URL]".to_owned(),
    }
}

/// The rendered AWS error behind a [`SecretError::Unavailable`].
#[derive(Debug)]
struct AwsError(String);

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AwsError {}

#[async_trait]
impl SecretProvider for AwsSecrets {
    fn name(&self) -> &'static str {
        "aws"
    }

    async fn get(&self, name: &str) -> Result<SecretValue, SecretError> {
        let mut output = self
            .client
            .get_secret_value()
            .secret_id(self.secret_id(name))
            .send()
            .await
            .map_err(|e| self.map_error(name, e))?;
        let version = output.version_id.take();
        let value = if let Some(text) = output.secret_string.take() {
            Zeroizing::new(text)
        } else if let Some(blob) = output.secret_binary.take() {
            let bytes = Zeroizing::new(blob.into_inner());
            match std::str::from_utf8(&bytes) {
                Ok(text) => Zeroizing::new(text.to_owned()),
                Err(_) => {
                    return Err(self.unavailable(
                        name,
                        format!(
                            "the SecretBinary of `{}` is not valid UTF-8",
                            self.secret_id(name)
                        ),
                    ));
                }
            }
        } else {
            return Err(self.unavailable(
                name,
                format!(
                    "`{}` has neither a SecretString nor a SecretBinary",
                    self.secret_id(name)
                ),
            ));
        };
        if value.trim().is_empty() {
            return Err(SecretError::NotFound {
                name: name.to_owned(),
                provider: "aws",
            });
        }
        Ok(SecretValue::new(
            SecretString::from(value.as_str()),
            version,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::error::ErrorMetadata;
    use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;

    async fn provider() -> AwsSecrets {
        AwsSecrets::connect(AwsSecretsConfig {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            prefix: "app/".into(),
            ..AwsSecretsConfig::default()
        })
        .await
        .unwrap()
    }

    fn service(err: GetSecretValueError) -> SdkError<GetSecretValueError, ()> {
        SdkError::service_error(err, ())
    }

    fn coded(code: &str) -> SdkError<GetSecretValueError, ()> {
        service(GetSecretValueError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("no access to app/pepper")
                .build(),
        ))
    }

    #[tokio::test]
    async fn connect_keeps_settings_and_builds_ids() {
        let p = provider().await;
        assert_eq!(p.name(), "aws");
        assert_eq!(p.region(), Some("eu-west-1"));
        assert_eq!(p.secret_id("pepper"), "app/pepper");
        let debug = format!("{p:?}");
        assert!(debug.contains("eu-west-1"), "{debug}");
        assert!(debug.contains("127.0.0.1:9"), "{debug}");
        assert!(debug.contains("app/"), "{debug}");
    }

    #[test]
    fn debug_hides_userinfo_in_the_endpoint() {
        assert_eq!(
            redact_userinfo("https://name:pass@vpce.example:8443/"),
            "https://vpce.example:8443/"
        );
        assert_eq!(
            redact_userinfo("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
    }

    #[tokio::test]
    async fn maps_service_errors() {
        let p = provider().await;
        let missing = service(GetSecretValueError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Secrets Manager can't find the specified secret.")
                .build(),
        ));
        assert!(matches!(
            p.map_error("pepper", missing),
            SecretError::NotFound { provider: "aws", ref name } if name == "pepper"
        ));
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
        ] {
            assert!(
                matches!(
                    p.map_error("pepper", coded(code)),
                    SecretError::Denied {
                        provider: "aws",
                        ..
                    }
                ),
                "{code}"
            );
        }
        let other = p.map_error("pepper", coded("ThrottlingException"));
        match &other {
            SecretError::Unavailable { source, .. } => {
                let text = source.to_string();
                assert!(text.contains("ThrottlingException"), "{text}");
                assert!(text.contains("app/pepper"), "{text}");
            }
            e => panic!("expected Unavailable, got {e:?}"),
        }
        let timeout = p.map_error(
            "pepper",
            SdkError::<GetSecretValueError, ()>::timeout_error("attempt timed out"),
        );
        assert!(matches!(timeout, SecretError::Unavailable { .. }));

        // An unparsable response: its body may be a successful answer holding the value.
        let garbled = p.map_error(
            "pepper",
            SdkError::<GetSecretValueError, String>::response_error(
                "unexpected token",
                "{\"SecretString\":\"marker-value-9".to_owned(),
            ),
        );
        match &garbled {
            SecretError::Unavailable { source, .. } => {
                let text = format!("{source} {source:?} {garbled:?}");
                assert!(!text.contains("marker-value"), "{text}");
                assert!(text.contains("app/pepper"), "{text}");
            }
            e => panic!("expected Unavailable, got {e:?}"),
        }
    }
}

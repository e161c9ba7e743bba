//! The connector's failures, each with an operator message naming the cause and the fix, and
//! the contract's `connector-error` case it becomes.
//!
//! No variant carries a secret or a token: messages quote setting keys, ids and Azure's error
//! codes only.

use keelson_plugin_sdk::ConnectorError;

/// Everything that can go wrong, before it crosses the contract as a [`ConnectorError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Error {
    #[error(
        "setting `{key}` is `{value}`; expected a GUID like `00000000-0000-0000-0000-000000000000`"
    )]
    NotAGuid { key: &'static str, value: String },

    #[error(
        "setting `tenant_id` is `{0}`; expected the Directory (tenant) ID (a GUID) or a verified \
         domain like `contoso.onmicrosoft.com`"
    )]
    BadTenant(String),

    #[error(
        "setting `{key}` is `{value}`; expected an `https://` URL with a host and no query, \
         fragment or user info"
    )]
    BadEndpoint { key: &'static str, value: String },

    #[error(
        "the client secret of app `{client_id}` was rejected (AADSTS7000215): set \
         `client_secret` to the secret's Value (not its Secret ID) from the app's Certificates & \
         secrets page"
    )]
    WrongSecret { client_id: String },

    #[error(
        "the client secret of app `{client_id}` has expired (AADSTS7000222): create a new client \
         secret under the app's Certificates & secrets, store it in `client_secret`, and plan the \
         next rotation"
    )]
    ExpiredSecret { client_id: String },

    #[error(
        "application `{client_id}` does not exist in tenant `{tenant}` (AADSTS700016): check \
         `client_id` (the Application (client) ID) and `tenant_id`, and that the app was \
         registered in that directory"
    )]
    UnknownApp { client_id: String, tenant: String },

    #[error(
        "tenant `{tenant}` was not found (AADSTS90002): check `tenant_id` (the Directory \
         (tenant) ID) and that `cloud` is the cloud the tenant lives in"
    )]
    UnknownTenant { tenant: String },

    #[error("the token scope `{scope}` was rejected (AADSTS70011): {hint}")]
    BadScope { scope: String, hint: &'static str },

    #[error("sign-in of app `{client_id}` was refused ({code}, HTTP {status}): {description}")]
    SignInRefused {
        client_id: String,
        code: String,
        status: u16,
        description: String,
    },

    #[error(
        "app `{client_id}` may not read subscription `{subscription}` (AuthorizationFailed): assign \
         it the Reader role on the subscription under Access control (IAM); a new assignment can \
         take a few minutes to apply"
    )]
    MissingRole {
        client_id: String,
        subscription: String,
    },

    #[error(
        "subscription `{subscription}` was not found (SubscriptionNotFound): check \
         `subscription_id`, and that the subscription is in tenant `{tenant}` and cloud `{cloud}`"
    )]
    SubscriptionNotFound {
        subscription: String,
        tenant: String,
        cloud: &'static str,
    },

    #[error(
        "the app's access token was rejected by Azure Resource Manager ({code}): check that `tenant_id` \
         is the directory of subscription `{subscription}` and that `cloud` is right"
    )]
    TokenRejected { code: String, subscription: String },

    #[error("access to `{what}` was refused ({code}, HTTP 403): {message}")]
    ArmForbidden {
        what: String,
        code: String,
        message: String,
    },

    #[error("`{what}` was not found ({code}): {message}")]
    ArmNotFound {
        what: String,
        code: String,
        message: String,
    },

    #[error("`{what}` failed ({code}, HTTP {status}); try again later")]
    ArmUnavailable {
        what: String,
        code: String,
        status: u16,
    },

    #[error("`{what}` was refused ({code}, HTTP {status}): {message}")]
    ArmOther {
        what: String,
        code: String,
        status: u16,
        message: String,
    },

    #[error(
        "the `{dataset}` findings query was rejected by Resource Graph ({code}): {message}; if this tenant \
         no longer has that data set, set `findings_source` to `individual` or `auto`"
    )]
    QueryRejected {
        dataset: &'static str,
        code: String,
        message: String,
    },

    #[error(
        "the `{dataset}` findings result from Resource Graph was truncated without a continuation token"
    )]
    Truncated { dataset: &'static str },

    #[error(
        "registry `{registry}` refused the app ({step}, HTTP {status}): give the app the Reader (or \
         AcrPull) role on the registry, check the registry's firewall and that it accepts Entra \
         tokens (`azureADAuthenticationAsArmPolicy` enabled)"
    )]
    RegistryDenied {
        registry: String,
        step: String,
        status: u16,
    },

    #[error("registry `{registry}` has no `{what}` (HTTP 404)")]
    RegistryNotFound { registry: String, what: String },

    #[error("`{0}` is not a registry login server (`name.azurecr.io`)")]
    NotALoginServer(String),

    #[error("{what} pointed to `{link}`, outside `{expected}`; the listing stops there")]
    ForeignLink {
        what: &'static str,
        link: String,
        expected: String,
    },

    #[error("{what} answered something unusable: {detail}")]
    Malformed { what: String, detail: String },
}

impl From<Error> for ConnectorError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::NotAGuid { .. }
            | Error::BadTenant(_)
            | Error::BadEndpoint { .. }
            | Error::BadScope { .. }
            | Error::QueryRejected { .. } => Self::InvalidConfig(message),
            Error::WrongSecret { .. }
            | Error::ExpiredSecret { .. }
            | Error::UnknownApp { .. }
            | Error::UnknownTenant { .. }
            | Error::SignInRefused { .. }
            | Error::TokenRejected { .. } => Self::InvalidCredentials(message),
            Error::MissingRole { .. }
            | Error::ArmForbidden { .. }
            | Error::RegistryDenied { .. } => Self::PermissionDenied(message),
            Error::SubscriptionNotFound { .. }
            | Error::ArmNotFound { .. }
            | Error::RegistryNotFound { .. } => Self::NotFound(message),
            Error::ArmUnavailable { .. }
            | Error::Truncated { .. }
            | Error::ForeignLink { .. }
            | Error::Malformed { .. } => Self::Unavailable(message),
            Error::ArmOther { .. } | Error::NotALoginServer(_) => Self::Other(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_failures_are_invalid_credentials_with_a_fix() {
        let err: ConnectorError = Error::WrongSecret {
            client_id: "app".into(),
        }
        .into();
        assert_eq!(err.kind(), "invalid-credentials");
        let msg = err.message().unwrap();
        assert!(msg.contains("AADSTS7000215") && msg.contains("`client_secret`"));

        let err: ConnectorError = Error::ExpiredSecret {
            client_id: "app".into(),
        }
        .into();
        assert!(err.message().unwrap().contains("expired"));
    }

    #[test]
    fn each_error_maps_to_its_contract_case() {
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::NotAGuid {
                    key: "client_id",
                    value: "x".into(),
                },
                "invalid-config",
            ),
            (
                Error::MissingRole {
                    client_id: "a".into(),
                    subscription: "s".into(),
                },
                "permission-denied",
            ),
            (
                Error::SubscriptionNotFound {
                    subscription: "s".into(),
                    tenant: "t".into(),
                    cloud: "public",
                },
                "not-found",
            ),
            (
                Error::RegistryDenied {
                    registry: "r.azurecr.io".into(),
                    step: "token exchange".into(),
                    status: 401,
                },
                "permission-denied",
            ),
            (Error::Truncated { dataset: "mdvm" }, "unavailable"),
            (Error::NotALoginServer("a/b".into()), "other"),
        ];
        for (error, kind) in cases {
            let shown = error.to_string();
            let mapped = ConnectorError::from(error);
            assert_eq!(mapped.kind(), kind, "{shown}");
            assert_eq!(mapped.message(), Some(shown.as_str()));
        }
    }
}

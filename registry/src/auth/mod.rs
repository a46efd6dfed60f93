//! Authentication: where credentials come from ([`CredentialSources`]), how
//! `WWW-Authenticate` challenges are read ([`challenge`]), and writing logins to
//! Docker's config file ([`login`]). The bearer-token exchange itself lives with the
//! HTTP client.

pub mod challenge;
mod credentials;
pub mod login;

pub use credentials::{Credential, CredentialError, CredentialOrigin, CredentialSources};

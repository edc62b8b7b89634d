//! Writes the capability and push probes make, and undo: upload sessions
//! ([`Api::start_upload`], [`UploadSession::cancel`]), cross-repository mounts
//! ([`Api::mount`]) and the removal of the blob link one wrote ([`Api::remove_blob_link`]),
//! `HEAD` of a blob, and the delete and `OPTIONS` probes.

use reqwest::Method;

use crate::client::{Request, RequestError, Response};

use super::{Answer, Api, Class, Digest, Scope, insufficient_scope, same_origin};

/// An upload session the registry opened (a 202 to a POST on `blobs/uploads/`).
#[derive(Debug, Clone)]
pub struct UploadSession {
    location: Option<String>,
    scope: Scope,
}

/// What became of an upload session the exporter opened.
#[derive(Debug, Clone)]
pub struct Cancel {
    pub cancelled: bool,
    /// Plain words for messages and evidence, e.g. "cancelled, HTTP 204".
    pub detail: String,
}

impl Api<'_> {
    /// `POST /v2/<repo>/blobs/uploads/`: opens an upload session (202) and writes nothing.
    pub async fn start_upload(
        &self,
        repo: &str,
        scopes: &[Scope],
    ) -> Result<(Response, Scope), RequestError> {
        self.send_with_scopes(scopes, |scope| {
            Request::new(Method::POST, format!("v2/{repo}/blobs/uploads/")).scope(scope.as_str())
        })
        .await
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<blob>&from=<from>`: 201 mounted, 202 an
    /// ordinary upload session instead.
    pub async fn mount(
        &self,
        repo: &str,
        blob: &Digest,
        from: &str,
        scopes: &[Scope],
    ) -> Result<(Response, Scope), RequestError> {
        self.send_with_scopes(scopes, |scope| {
            Request::new(
                Method::POST,
                format!("v2/{repo}/blobs/uploads/?mount={blob}&from={from}"),
            )
            .scope(scope.as_str())
        })
        .await
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`.
    pub async fn head_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[Scope],
    ) -> Result<(Response, Scope), RequestError> {
        self.send_with_scopes(scopes, |scope| {
            Request::new(Method::HEAD, format!("v2/{repo}/blobs/{digest}")).scope(scope.as_str())
        })
        .await
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`.
    pub async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Response, RequestError> {
        self.send(
            Request::new(Method::DELETE, format!("v2/{repo}/manifests/{digest}"))
                .scope(scope.as_str()),
        )
        .await
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`.
    pub async fn delete_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Response, RequestError> {
        self.send(
            Request::new(Method::DELETE, format!("v2/{repo}/blobs/{digest}")).scope(scope.as_str()),
        )
        .await
    }

    /// Deletes the blob link a cross-repository mount wrote (the undo of [`Api::mount`]);
    /// returns what happened, in plain words, for evidence.
    pub async fn remove_blob_link(&self, repo: &str, blob: &Digest, scope: &Scope) -> String {
        let answer = match self.delete_blob(repo, blob, scope).await {
            Ok(r) => Answer::of(&r),
            Err(e) => return format!("the mounted blob link stays in {repo}: {e}"),
        };
        match answer.class {
            Class::Success => format!("the mounted blob link in {repo} was deleted"),
            Class::Unsupported | Class::ReadOnly => format!(
                "the mounted blob link stays in {repo}: the registry refuses deletes ({})",
                answer.describe()
            ),
            Class::NotPermitted => format!(
                "the mounted blob link stays in {repo}: the credentials lack delete ({})",
                answer.describe()
            ),
            _ => format!(
                "the mounted blob link stays in {repo}: its DELETE answered {}",
                answer.describe()
            ),
        }
    }

    /// `OPTIONS /v2/<repo>/manifests/<digest>`: its `Allow` is evidence only, since
    /// Distribution lists DELETE even with delete disabled.
    pub async fn options_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Response, RequestError> {
        self.send(
            Request::new(Method::OPTIONS, format!("v2/{repo}/manifests/{digest}"))
                .scope(scope.as_str()),
        )
        .await
    }
}

impl UploadSession {
    /// The session a 202 answer opened, to be cancelled with `scope`'s token.
    pub fn opened(resp: &Response, scope: Scope) -> UploadSession {
        UploadSession {
            location: resp.header("location").map(str::to_string),
            scope,
        }
    }

    /// Cancels the session with a DELETE of its `Location`, on the registry's own origin
    /// only (credentials never go elsewhere).
    pub async fn cancel(&self, api: &Api<'_>) -> Cancel {
        let refused = |detail: String| Cancel {
            cancelled: false,
            detail,
        };
        let Some(location) = &self.location else {
            return refused("the registry sent no Location for the session".into());
        };
        let url = match same_origin(api.base_url(), location) {
            Ok(url) => url,
            Err(why) => return refused(why),
        };
        let request = Request::new(Method::DELETE, url.as_str()).scope(self.scope.as_str());
        let resp = match api.send(request).await {
            Ok(resp) => resp,
            Err(e) => return refused(format!("cancelling failed: {e}")),
        };
        let answer = Answer::of(&resp);
        let code = answer.status;
        match answer.class {
            Class::Success => Cancel {
                cancelled: true,
                detail: format!("cancelled, HTTP {code}"),
            },
            _ if code == 401 && insufficient_scope(&resp) => refused(
                "HTTP 401 insufficient_scope: the token lacks the delete action, which the registry wants for cancelling"
                    .into(),
            ),
            Class::Unauthenticated | Class::NotPermitted => {
                refused(format!("HTTP {code}: no permission to cancel"))
            }
            Class::NotFound | Class::RepositoryUnknown => {
                refused(format!("{}: the registry no longer knows the session", answer.describe()))
            }
            _ if code == 405 => {
                refused("HTTP 405: the registry does not allow cancelling uploads".into())
            }
            _ => refused(format!("{} to the cancel", answer.describe())),
        }
    }
}
